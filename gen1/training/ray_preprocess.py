"""``gen1 preprocess --engine ray``: the same shards and index as :func:`gen1.training.preprocess.preprocess`,
made by a Ray Data pipeline that scales past one process group.

Why: the classic engine is one Accelerate process group. Shards are split statically (shard ``k`` to rank
``k mod W``), decoding runs inline in the GPU process, all ranks wait on a barrier before rank 0 writes the
index, and one slow or failed process stalls or ends the job. Here:

* **decode** is a Ray Data ``map`` over the missing shards: one CPU task per shard (any node, CPU-only nodes
  included) reads its inputs with :func:`~gen1.training.preprocess.load_clips` (only the frames the kept clips
  need) and hands the uint8 clips on as one ``.npz`` byte string (no pickle); a task whose worker died is
  run again, an input that cannot be read is recorded as failed, as in the classic engine;
* **encode** is a pool of encoder actors (``map_batches`` over a callable class; one per GPU where there are
  GPUs), each loading the VAE, depth estimator and content encoder once, encoding a shard's clips with
  :func:`~gen1.training.preprocess.encode_input` and writing the shard atomically itself; a dead actor is
  restarted and its shard retried;
* Ray Data streams: decoding of later shards overlaps encoding of earlier ones, shards finish in any order and
  there is no barrier; the driver only collects one small summary per shard and, at the end, writes the index
  (:func:`~gen1.training.shards.write_index`, which reads shard headers only).

Shard names depend only on the input order, and a shard on disk that reads back is never redone, so a rerun
after a crash (of the driver, an actor or a node) writes only what is missing. The output folder must be one
that every node can write (a shared filesystem). Encoded shards are byte-for-byte what the classic engine
writes from the same encoder, so ``gen1 train`` cannot tell the engines apart.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from gen1.training.preprocess import (
    InputItem,
    PreprocessSettings,
    check_out,
    check_rerun,
    encode_input,
    encoder_info,
    index_info,
    load_clips,
    shard_finished,
    shard_inputs,
)
from gen1.training.shards import INDEX_NAME, shard_name, write_index, write_shard

logger = logging.getLogger(__name__)


@dataclass
class RaySettings:
    """How the Ray engine uses the cluster."""

    encoders: Optional[int] = None  # encoder actors (None: one per GPU of the cluster, or 1 without GPUs)
    encoder_gpus: Optional[float] = None  # GPUs per encoder actor (None: 1 where the cluster has GPUs, else 0)
    encoder_cpus: float = 1.0  # CPUs per encoder actor (0: the actor only waits on its GPU)
    decode_cpus: float = 1.0  # CPUs per decode task

    def validate(self) -> "RaySettings":
        if self.encoders is not None and (not isinstance(self.encoders, int) or self.encoders < 1):
            raise ValueError(f"encoders must be a positive integer, got {self.encoders!r}")
        for name in ("encoder_cpus", "decode_cpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.encoder_gpus is not None and self.encoder_gpus < 0:
            raise ValueError(f"encoder_gpus must be >= 0, got {self.encoder_gpus!r}")
        return self


def pack_clips(per_input: list, failed: list[tuple[str, str]]) -> dict:
    """A decoded shard as a Ray Data row: ``per_input[j]`` is input ``j``'s ``[(start, frames), ...]`` or None
    when it failed (``failed``: ``(path, reason)``). Frames go into one ``.npz`` byte string (no pickle)."""
    arrays, layout = {}, []
    for j, clips in enumerate(per_input):
        if clips is None:
            layout.append(None)
            continue
        layout.append([int(start) for start, _ in clips])
        for c, (_, frames) in enumerate(clips):
            arrays[f"{j}_{c}"] = np.ascontiguousarray(frames, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return {"frames": buffer.getvalue(), "layout": json.dumps(layout), "failed": json.dumps(failed)}


def unpack_clips(row: dict) -> tuple[list, list]:
    """The inverse of :func:`pack_clips`: ``(per_input, failed)``."""
    layout = json.loads(row["layout"])
    failed = [tuple(f) for f in json.loads(row["failed"])]
    with np.load(io.BytesIO(row["frames"]), allow_pickle=False) as arrays:
        per_input = [None if starts is None else [(start, arrays[f"{j}_{c}"]) for c, start in enumerate(starts)]
                     for j, starts in enumerate(layout)]
    return per_input, failed


class DecodeShard:
    """The decode step (a plain function object, run as Ray tasks): a shard id -> its inputs' uint8 clips."""

    def __init__(self, groups: list[list[InputItem]], settings: PreprocessSettings, load: Callable = load_clips):
        self.groups, self.settings, self.load = groups, settings, load

    def __call__(self, row: dict) -> dict:
        k = int(row["shard"])
        per_input, failed = [], []
        for item in self.groups[k]:
            try:
                per_input.append(self.load(item, self.settings))
            except Exception as err:  # noqa: BLE001 -- an unreadable input is recorded, as in the classic engine
                per_input.append(None)
                failed.append((item.path, str(err)))
        return {"shard": k, **pack_clips(per_input, failed)}


class EncodeShards:
    """The encode step (a Ray actor class): builds the encoder once, then encodes and writes whole shards."""

    def __init__(self, make_encoder: Callable, groups: list[list[InputItem]], out: str,
                 settings: PreprocessSettings):
        import torch  # lazy: torch is heavy and only this path needs it

        device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per actor
        self.encoder = make_encoder(device)
        self.groups, self.out, self.settings = groups, Path(out), settings
        self.dtype = getattr(torch, settings.dtype)

    def __call__(self, batch: dict) -> dict:
        shards, clips, written_failed = [], [], []
        for i in range(len(batch["shard"])):
            k = int(batch["shard"][i])
            row = {name: batch[name][i] for name in ("frames", "layout", "failed")}
            count, failed = self.encode_shard(k, row)
            shards.append(k)
            clips.append(count)
            written_failed.append(json.dumps(failed))
        info = json.dumps(encoder_info(self.encoder))
        return {"shard": np.array(shards), "clips": np.array(clips), "failed": np.array(written_failed),
                "info": np.array([info] * len(shards))}

    def encode_shard(self, k: int, row: dict) -> tuple[int, list]:
        """Encode shard ``k`` from its decoded row and write it; ``(clips written, failed (path, reason))``."""
        per_input, failed = unpack_clips(row)
        reasons = dict(failed)
        group = self.groups[k]
        records, failed_paths = [], []
        for item, clips in zip(group, per_input):
            if clips is not None:
                try:  # all of an input's clips, or none of them if any fails
                    records.extend(encode_input(self.encoder, item, clips))
                    continue
                except Exception as err:  # noqa: BLE001 -- one bad file must not end the job
                    reasons[item.path] = str(err)
            logger.warning("skipping input %s: %s", item.path, reasons[item.path])
            failed_paths.append(item.path)
        write_shard(self.out / shard_name(k), records, inputs=[i.path for i in group], failed=failed_paths,
                    dtype=self.dtype)
        return len(records), [(p, reasons[p]) for p in failed_paths]


def _cluster_gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _encoder_info_remote(ray, make_encoder: Callable, gpus: float) -> dict:
    """The encoder's index fields from a one-off task (only when no shard was encoded in this run and no index
    is on disk to take them from)."""
    def info():
        import torch  # lazy: torch is heavy and only this path needs it

        return encoder_info(make_encoder("cuda" if torch.cuda.is_available() else "cpu"))

    return ray.get(ray.remote(num_gpus=gpus)(info).remote())


def preprocess_ray(inputs: list[InputItem], out: str | Path, make_encoder: Callable,
                   settings: PreprocessSettings, ray_settings: Optional[RaySettings] = None, *,
                   on_shard: Optional[Callable[[int], None]] = None, load: Callable = load_clips,
                   models: Optional[dict] = None) -> dict:
    """Write the missing shards of ``inputs`` into ``out`` on the connected Ray cluster, then the index.

    ``make_encoder(device)`` builds the :class:`~gen1.training.preprocess.ClipEncoder` inside each encoder actor
    (it must be picklable: a module-level function or a ``functools.partial`` of one). ``ray.init`` must have
    been called (a local cluster, or ``address=`` an existing one). ``on_shard(k)`` is called on the driver as
    each shard is reported done. ``load(item, settings)`` reads an input's clips in the decode tasks (default
    :func:`~gen1.training.preprocess.load_clips`). ``models``: the encoders' paths, recorded and compared as
    :func:`~gen1.training.preprocess.preprocess` does. Returns the summary of :func:`gen1.training.preprocess.preprocess`.
    """
    import ray
    import ray.data

    settings.validate()
    ray_settings = (ray_settings or RaySettings()).validate()
    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = shard_inputs(inputs, settings)
    check_rerun(out, settings, groups, record=True, models=models)
    missing = [k for k in range(len(groups)) if not shard_finished(out / shard_name(k))]
    summary = dict(written=0, skipped=len(groups) - len(missing), failed=[], clips=0)
    gpus = ray_settings.encoder_gpus
    if gpus is None:
        gpus = 1.0 if _cluster_gpus(ray) else 0.0
    info = None
    if missing:
        encoders = ray_settings.encoders or max(1, _cluster_gpus(ray))
        encoders = min(encoders, len(missing))
        ds = ray.data.from_items([{"shard": k} for k in missing], override_num_blocks=len(missing))
        # retries are Ray Data's defaults: a decode task whose worker died runs again, a dead encoder actor is
        # restarted and its shard retried (both without limit); errors of an input are caught and recorded
        ds = ds.map(DecodeShard(groups, settings, load), num_cpus=ray_settings.decode_cpus)
        ds = ds.map_batches(EncodeShards, fn_constructor_args=(make_encoder, groups, str(out), settings),
                            batch_size=1, concurrency=encoders, num_cpus=ray_settings.encoder_cpus, num_gpus=gpus)
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                summary["written"] += 1
                summary["clips"] += int(row["clips"])
                summary["failed"].extend(tuple(f) for f in json.loads(row["failed"]))
                info = json.loads(row["info"])
                if on_shard is not None:
                    on_shard(int(row["shard"]))
        finally:  # an interrupted driver stops the pipeline now (a shard being written is renamed whole or not)
            close = getattr(rows, "close", None)
            if close is not None:
                close()
    if info is None and (out / INDEX_NAME).is_file():
        previous = json.loads((out / INDEX_NAME).read_text(encoding="utf-8"))
        info = {key: previous[key] for key in ("latent_channels", "content_dim", "scaling_factor", "shift_factor")}
    if info is None:
        info = _encoder_info_remote(ray, make_encoder, gpus)
    summary["index"] = write_index(out, index_info(settings, len(inputs), **info))
    return summary
