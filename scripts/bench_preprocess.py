"""Ray vs classic preprocessing with decode and encode replaced by fixed sleeps (not a test).

What it measures is the engines' scheduling, not codecs or models: every input's decode sleeps ``--decode``
seconds (a CPU's work) and every clip's encode sleeps ``--encode`` seconds (a GPU's work). Both engines get the
same cores and the same number of encoders (``--workers``):

* classic: ``--workers`` processes each taking shards ``k % W == rank`` and decoding then encoding inline, then
  a barrier and rank 0's index, as ``gen1 preprocess`` under a launcher. They are spawned (fresh interpreters
  importing gen1 and torch, as ``torchrun`` starts them); ``classic_forked_s`` also times forked processes that
  start with everything imported, a lower bound no launcher reaches;
* Ray: a local Ray (already running: ``ray.init`` is not timed) with ``--workers`` CPUs for decode tasks and
  ``--workers`` encoder actors that hold no CPU (stand-ins for GPUs), so decoding of later shards overlaps
  encoding of earlier ones. The actors start afresh in every run (they import torch), as in a real job.

Each engine writes real shards (tiny tensors) into a fresh folder; the time is from the launch to the written
index. Prints one JSON object; ``--json PATH`` also writes it. Example::

    python scripts/bench_preprocess.py --shards 20 --workers 2 --decode 1 --encode 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


class SleepEncoder:
    """A ClipEncoder stand-in: sleeps ``seconds`` per clip, returns fixed tiny tensors."""

    latent_channels, scaling_factor, shift_factor = 4, 0.18215, None

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.content = type("Content", (), {"embedding_dim": 8})()

    def __call__(self, frames):
        time.sleep(self.seconds)
        f = len(frames)
        return torch.zeros(4, f, 4, 4), torch.zeros(1, f, 4, 4), torch.zeros(f, 8)


class SleepLoad:
    """A ``load_clips`` stand-in: sleeps ``seconds`` per input, returns one 4-frame clip of zeros."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, item, settings):
        time.sleep(self.seconds)
        return [(0, np.zeros((settings.clip_length, 32, 32, 3), np.uint8))]


def make_sleep_encoder(seconds: float, device: str) -> SleepEncoder:
    return SleepEncoder(seconds)


def _inputs(count: int):
    from gen1.training.preprocess import InputItem

    return [InputItem(f"input{i:04d}.mp4") for i in range(count)]


def _settings():
    from gen1.training.preprocess import PreprocessSettings

    return PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=1, dtype="float32")


def _classic_rank(rank: int, world: int, out: str, args, barrier) -> None:
    from gen1.training.preprocess import preprocess

    preprocess(_inputs(args.shards), out, SleepEncoder(args.encode), _settings(), rank=rank, world_size=world,
               barrier=barrier.wait, load=SleepLoad(args.decode))


def run_classic(args, out: Path, start_method: str = "spawn") -> float:
    context = multiprocessing.get_context(start_method)
    barrier = context.Barrier(args.workers)
    start = time.perf_counter()
    procs = [context.Process(target=_classic_rank, args=(r, args.workers, str(out), args, barrier))
             for r in range(args.workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    if any(proc.exitcode for proc in procs):
        raise SystemExit("a classic process failed")
    return time.perf_counter() - start


def run_ray(args, out: Path) -> float:
    import functools

    from gen1.training.ray_preprocess import RaySettings, preprocess_ray

    start = time.perf_counter()
    preprocess_ray(_inputs(args.shards), out, functools.partial(make_sleep_encoder, args.encode), _settings(),
                   RaySettings(encoders=args.workers, encoder_cpus=0), load=SleepLoad(args.decode))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="cores, and encoders, for each engine")
    parser.add_argument("--decode", type=float, default=1.0, help="seconds of decoding per input")
    parser.add_argument("--encode", type=float, default=1.0, help="seconds of encoding per clip")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()

    import ray

    repo = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=args.workers, object_store_memory=200 * 2**20, include_dashboard=False,
             log_to_driver=False)
    runs = {"classic": run_classic, "classic_forked": lambda a, o: run_classic(a, o, "fork"), "ray": run_ray}
    times = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        run_ray(args, Path(tmp) / "warm-up")  # Ray's task workers import gen1 once, as on a cluster already in use
        for r in range(args.repeats):
            for name, run in runs.items():
                times[name].append(run(args, Path(tmp) / f"{name}{r}"))
    ray.shutdown()
    best = {name: min(values) for name, values in times.items()}
    ideal_classic = args.shards / args.workers * (args.decode + args.encode)
    result = dict(shards=args.shards, workers=args.workers, decode_s=args.decode, encode_s=args.encode,
                  **{f"{name}_s": values for name, values in times.items()},
                  ratio=best["ray"] / best["classic"], ratio_to_forked=best["ray"] / best["classic_forked"],
                  ideal_classic_s=ideal_classic,
                  ideal_ray_s=args.shards / args.workers * max(args.decode, args.encode) + args.decode + args.encode)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
