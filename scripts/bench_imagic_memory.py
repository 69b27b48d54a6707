"""Memory and time of one Imagic training step on the public route, with and without gradient checkpointing.

Not a test. ``gen1 customize --imagic`` back-propagates through the whole UNet with its motion modules and the depth
ControlNet, over a window of the clip (docs/directions.md). This builds that route at full SD-1.5 size with random
weights (compute and memory do not depend on the weights; :func:`bench_public_route.build_pipeline`), sets up an
:class:`gen1.training.imagic.ImagicRun` on a random clip with a random depth (so no depth model runs), and measures one
video-mode step of the embedding phase and one of the LoRA phase (forward and backward): the peak memory the step
adds to what the models already hold, and its seconds. Each setting runs in a process of its own.

Memory: on a GPU ``torch.cuda.max_memory_allocated`` over the step; on the CPU the peak resident set size, sampled
every 5 ms, minus the size just before the step (after ``malloc_trim``, so that memory freed by earlier work does
not count as held).

    python scripts/bench_imagic_memory.py --frames 4 --res 128             # CPU, fp32
    python scripts/bench_imagic_memory.py --frames 16 --res 512 --dtype fp16 --json imagic_memory.json   # GPU
    python scripts/bench_imagic_memory.py --tiny --res 32                  # smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import warnings

import torch
from bench_public_route import DTYPES, add_model_arguments, build_pipeline, model_flags


class PeakResidentSize:
    """The process's largest resident set size (bytes) while the block runs, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def now(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self.now()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


class PeakMemory:
    """The peak memory the block adds to what is held when it starts (bytes, ``added``): on a GPU the CUDA
    allocator's peak; on the CPU the sampled resident set size, the heap trimmed first (``malloc_trim``) so that
    memory freed by earlier work does not count as held."""

    def __init__(self, device):
        self.device, self.added = device, 0

    def __enter__(self):
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        else:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
            self.sampler = PeakResidentSize().__enter__()
            self.before = self.sampler.peak
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.sampler.__exit__(*exc)
            peak = self.sampler.peak
        self.added = peak - self.before


def one_step(run, phase: str, device) -> dict:
    """Peak bytes added and seconds of one video-mode training step of ``phase``."""
    context = run.embedding if phase == "embedding" else run.embedding.detach()
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        loss = run.draw_loss(context, phase, 0)
        loss.backward()
    seconds = time.perf_counter() - start
    for p in list(run.trainable(phase).values()):
        p.grad = None
    return dict(peak_added_gib=memory.added / 2**30, seconds=seconds, loss=float(loss.detach()))


def measure(args) -> dict:
    """Both phases' steps with or without checkpointing (``args.checkpointing``), in this process."""
    import tempfile

    from gen1.training.imagic import ImagicRun, ImagicSettings

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype] if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = build_pipeline(args.tiny, device, dtype)
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(args.frames, 3, args.res, args.res, generator=generator)
    depth = torch.rand(args.frames, 1, args.res, args.res, generator=generator)
    settings = ImagicSettings(image_ratio=0.0, gradient_checkpointing=args.checkpointing)  # video-mode steps
    with tempfile.TemporaryDirectory() as work, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = ImagicRun(pipe, frames, "a watercolour painting of a street", settings, work, device=device,
                        progress=False, depth=depth)
        result = dict(frames=run.clip.window, res=args.res, dtype=str(dtype).removeprefix("torch."),
                      device=str(device), gradient_checkpointing=args.checkpointing)
        result["embedding"] = one_step(run, "embedding", device)
        run.start_lora()
        result["lora"] = one_step(run, "lora", device)
    return result


def in_child(args, checkpointing: bool) -> dict:
    command = [sys.executable, __file__, "--child", *model_flags(args), "--frames", str(args.frames),
               "--res", str(args.res)]
    command += ["--threads", str(args.threads)] if args.threads else []
    command += ["--checkpointing"] if checkpointing else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return dict(gradient_checkpointing=checkpointing, failed=result.stderr.strip().splitlines()[-1:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--frames", type=int, default=4, help="frames of the clip (the window is at most 32)")
    parser.add_argument("--res", type=int, default=128, help="square frames of this many pixels")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    rows = [in_child(args, checkpointing) for checkpointing in (False, True)]
    for row in rows:
        print(json.dumps(row))
    if all("failed" not in row for row in rows):
        for phase in ("embedding", "lora"):
            off, on = rows[0][phase], rows[1][phase]
            print(f"{phase}: {off['peak_added_gib']:.2f} -> {on['peak_added_gib']:.2f} GiB "
                  f"({on['peak_added_gib'] / max(off['peak_added_gib'], 1e-9):.2f}x), {off['seconds']:.1f} -> "
                  f"{on['seconds']:.1f} s ({on['seconds'] / off['seconds']:.2f}x); loss {off['loss']:.6f} / "
                  f"{on['loss']:.6f}")
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, rows)


if __name__ == "__main__":
    main()
