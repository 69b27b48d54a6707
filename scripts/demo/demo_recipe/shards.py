"""Synthetic training clips -> a ``gen1 train`` shard directory (the format of :mod:`gen1.training.shards`).

Same tensors as ``gen1 preprocess`` (:class:`gen1.training.preprocess.ClipEncoder`): VAE posterior means
times ``scaling_factor``, per-clip normalised inverse depth on the latent grid
(:func:`gen1.conditioning.depth_to_latent_grid`), CLIP image embeddings of every frame. Two choices that
synthetic data makes possible:

* depth: the renderer's *exact* depth (:func:`gen1.depth.normalize_z_depth`: the estimator's own per-clip
  map applied to 1 / z) or, with ``depth_estimator``, that estimator's output on the rendered frames
  -- what the pipeline feeds the UNet at inference, and what Gen-1 trains on (MiDaS). Exact depth teaches
  structure fastest; estimated depth teaches the model how far to trust the estimate (an exact-depth model
  follows the estimate's wrong details).
* content: the embeddings of the clip's own frames (as ``gen1 preprocess`` does on real video) or, with
  ``reference_content``, of the same number of frames of *another* training scene rendered in the clip's
  style (:func:`reference_scene_seed`) -- what a reference image is at inference. A frame's own embedding
  also tells its layout (how much wall, floor and object it shows, the horizon's angle), which the UNet
  learns to use; at inference the reference's layout is another scene's and contradicts the depth.

Videos use seeds ``[0, videos)``, images (1-frame clips) seeds ``[videos, videos + images)``; all are
training seeds (:data:`gen1.demo.world.TRAIN_SEEDS`). Shards are written atomically and skipped when
present, so an interrupted build resumes.
"""

from __future__ import annotations

from pathlib import Path

import torch


def reference_scene_seed(seed: int) -> int:
    """The training scene whose frames stand in for the reference image of clip ``seed`` (never ``seed``)."""
    from gen1.demo.world import TRAIN_SEEDS

    return (int(seed) + TRAIN_SEEDS // 2) % TRAIN_SEEDS


@torch.no_grad()
def encode_clip(rgb: torch.Tensor, depth: torch.Tensor, vae, content_encoder, depth_estimator=None,
                content_frames: torch.Tensor | None = None):
    """(F,3,H,W) [0,1] frames and z-depth -> latents (C,F,h,w), depth (1,F,h,w), content (F,D).

    With ``depth_estimator`` (a :class:`gen1.depth.DepthEstimator`), the depth channel is its
    :meth:`~gen1.depth.DepthEstimator.estimate` of ``rgb`` and ``depth`` is not used. ``content_frames``
    (default ``rgb``) are the frames whose CLIP embeddings become the content, e.g. a reference's.
    """
    from gen1.depth import normalize_z_depth
    from gen1.training.encoding import encode_clips

    inv = depth_estimator.estimate(rgb) if depth_estimator is not None else normalize_z_depth(depth)
    content = None if content_frames is None else content_frames[None]
    clips = encode_clips(vae, content_encoder, rgb[None], inv[None], content_frames=content)
    return clips.latents[0], clips.depth[0], clips.content[0]


def build_shards(out: str | Path, vae, content_encoder, *, videos: int, images: int, frames: int = 8,
                 size: int = 64, shard_size: int = 128, depth_estimator=None, reference_content: bool = False) -> dict:
    """Write ``videos`` video clips and ``images`` image clips to ``OUT`` and its ``index.json``
    (depth: exact, or ``depth_estimator``'s estimate; content: the clip's own frames, or with
    ``reference_content`` another scene's in the same style; see the module docstring)."""
    from tqdm.auto import tqdm

    from demo_recipe.data import render_clip
    from gen1.demo.world import TRAIN_SEEDS
    from gen1.training.shards import ClipRecord, shard_name, write_index, write_shard

    if videos + images > TRAIN_SEEDS:
        raise ValueError(f"videos + images must be <= {TRAIN_SEEDS}, got {videos + images}")
    out = Path(out)
    kinds = dict(depth="exact (renderer)" if depth_estimator is None else "estimated (depth_estimator)",
                 content="another scene, same style" if reference_content else "the clip's own frames")
    _check_same_kinds(out, kinds)
    items = [(seed, False) for seed in range(videos)] + [(videos + i, True) for i in range(images)]
    num_shards = (len(items) + shard_size - 1) // shard_size
    for k in tqdm(range(num_shards), desc="shards"):
        path = out / shard_name(k)
        if path.is_file():
            continue
        records = []
        for seed, is_image in items[k * shard_size:(k + 1) * shard_size]:
            num_frames = 1 if is_image else frames
            rgb, depth, caption = render_clip(seed, seed, num_frames, size)
            reference = None  # content from the clip's own frames
            if reference_content:
                reference = render_clip(reference_scene_seed(seed), seed, num_frames, size)[0]
            latents, small, content = encode_clip(rgb, depth, vae, content_encoder, depth_estimator, reference)
            records.append(ClipRecord(latents, small, content, source=f"synthetic:{seed}", is_image=is_image,
                                      caption=caption))
        write_shard(path, records, inputs=[r.source for r in records])
    info = dict(clip_length=frames, stride=1, size=size, latent_channels=int(vae.config.latent_channels),
                content_dim=int(content_encoder.embedding_dim), scaling_factor=float(vae.config.scaling_factor),
                num_inputs=len(items), dtype="float16", **kinds)
    return write_index(out, info)


BUILD_FILE = "demo_build.json"  # the depth/content choices of a (possibly unfinished) build


def _check_same_kinds(out: Path, kinds: dict) -> None:
    """Refuse to resume a shard directory that was built with other depth/content choices (mixed data).

    The choices are recorded in ``BUILD_FILE`` before the first shard is written, so an interrupted build
    (no ``index.json`` yet) is checked too; a finished build from before the record is checked by its index.
    """
    import json

    from gen1.atomic import atomic_path

    for name in (BUILD_FILE, "index.json"):
        path = out / name
        if path.is_file():
            earlier = json.loads(path.read_text(encoding="utf-8"))
            for key, value in kinds.items():
                if earlier.get(key, value) != value:
                    raise ValueError(f"{out} holds shards whose {key} is {earlier[key]!r}; refusing to add shards "
                                     f"whose {key} is {value!r} (use another directory)")
    if not (out / BUILD_FILE).is_file():
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / BUILD_FILE) as tmp:
            tmp.write_text(json.dumps(kinds, indent=1), encoding="utf-8")
