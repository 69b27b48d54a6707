"""Synthetic training clips -> a ``gen1 train`` shard directory (the format of :mod:`gen1.training.shards`).

Same tensors as ``gen1 preprocess`` (:class:`gen1.training.preprocess.ClipEncoder`): VAE posterior means
times ``scaling_factor``, per-clip normalised inverse depth on the latent grid
(:func:`gen1.conditioning.depth_to_latent_grid`), CLIP image embeddings of every frame. Depth is either the renderer's *exact* depth (normalised with
:func:`gen1.depth.normalize_clip_depth`, the estimator's own per-clip map) or, with ``depth_estimator``,
that estimator's output on the rendered frames -- what the pipeline feeds the UNet at inference, and what
Gen-1 trains on (MiDaS). Exact depth teaches structure fastest; estimated depth teaches the model how far
to trust the estimate (an exact-depth model follows the estimate's wrong details).
Videos use seeds ``[0, videos)``, images (1-frame clips) seeds ``[videos, videos + images)``; all are
training seeds (:data:`gen1.demo.data.TRAIN_SEEDS`). Shards are written atomically and skipped when
present, so an interrupted build resumes.
"""

from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def encode_clip(rgb: torch.Tensor, depth: torch.Tensor, vae, content_encoder, depth_estimator=None):
    """(F,3,H,W) [0,1] frames and z-depth -> latents (C,F,h,w), depth (1,F,h,w), content (F,D).

    With ``depth_estimator`` (a :class:`gen1.depth.DepthEstimator`), the depth channel is its
    :meth:`~gen1.depth.DepthEstimator.estimate` of ``rgb`` and ``depth`` is not used.
    """
    from gen1.conditioning import depth_to_latent_grid, encode_latents
    from gen1.depth import normalize_clip_depth

    z = encode_latents(vae, rgb)  # (F,C,h,w), the convention preprocess and the pipeline use
    if depth_estimator is not None:
        inv = depth_estimator.estimate(rgb)
    else:
        inv = normalize_clip_depth(1.0 / depth.clamp_min(1e-6))
    small = depth_to_latent_grid(inv, tuple(z.shape[-2:]))
    content = content_encoder.encode_image(rgb)
    return z.permute(1, 0, 2, 3).contiguous(), small.permute(1, 0, 2, 3).contiguous(), content


def build_shards(out: str | Path, vae, content_encoder, *, videos: int, images: int, frames: int = 8,
                 size: int = 64, shard_size: int = 128, depth_estimator=None) -> dict:
    """Write ``videos`` video clips and ``images`` image clips to ``OUT`` and its ``index.json``
    (depth: exact, or ``depth_estimator``'s estimate; see the module docstring)."""
    from tqdm.auto import tqdm

    from gen1.demo.data import TRAIN_SEEDS, render_clip
    from gen1.training.shards import ClipRecord, shard_name, write_index, write_shard

    if videos + images > TRAIN_SEEDS:
        raise ValueError(f"videos + images must be <= {TRAIN_SEEDS}, got {videos + images}")
    out = Path(out)
    depth_kind = "exact (renderer)" if depth_estimator is None else "estimated (depth_estimator)"
    index_path = out / "index.json"
    if index_path.is_file():
        import json

        earlier = json.loads(index_path.read_text(encoding="utf-8")).get("depth")
        if earlier not in (None, depth_kind):
            raise ValueError(f"{out} holds shards with {earlier} depth; refusing to add {depth_kind} depth to them "
                             "(use another directory)")
    out.mkdir(parents=True, exist_ok=True)
    items = [(seed, False) for seed in range(videos)] + [(videos + i, True) for i in range(images)]
    num_shards = (len(items) + shard_size - 1) // shard_size
    for k in tqdm(range(num_shards), desc="shards"):
        path = out / shard_name(k)
        if path.is_file():
            continue
        records = []
        for seed, is_image in items[k * shard_size:(k + 1) * shard_size]:
            rgb, depth, caption = render_clip(seed, seed, 1 if is_image else frames, size)
            latents, small, content = encode_clip(rgb, depth, vae, content_encoder, depth_estimator)
            records.append(ClipRecord(latents, small, content, source=f"synthetic:{seed}", is_image=is_image,
                                      caption=caption))
        write_shard(path, records, inputs=[r.source for r in records])
    info = dict(clip_length=frames, stride=1, size=size, latent_channels=int(vae.config.latent_channels),
                content_dim=int(content_encoder.embedding_dim), scaling_factor=float(vae.config.scaling_factor),
                num_inputs=len(items), dtype="float16",
                depth=depth_kind)
    return write_index(out, info)
