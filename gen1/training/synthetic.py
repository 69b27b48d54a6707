"""``data.source: synthetic``: train on scenes rendered on the fly instead of cached shards.

Why: the synthetic scene generator (:mod:`gen1.synthetic`) gives unlimited clips with *exact* depth, so a
small model can be trained (and evaluated on held-out scenes) without any data set on disk. Each training step
renders its clips and encodes them with the frozen VAE and content encoder through
:func:`gen1.training.encoding.encode_clips`, exactly as ``gen1 preprocess`` encodes real clips, giving what
:class:`~gen1.training.shards.ShardDataset` yields for preprocessed clips. The depth is the renderer's exact
z-depth turned into inverse depth and normalised per clip with :func:`gen1.depth.normalize_z_depth` (the
estimators' convention). The content is the CLIP image embedding of every frame (``content_frames: all``), or
of one frame per clip drawn from the sample's generator and repeated (``one``: F times cheaper).

Seeds: item ``i < num_scenes`` is the video of scene ``seed_offset + i`` (scene, style and motion all come from
that seed); item ``num_scenes + i`` is the 1-frame image (first frame) of the same scene. Only seeds in
``[seed_offset, seed_offset + num_scenes)`` are ever rendered for training, so seeds outside the range are
held out. Which items a micro-step uses is decided by :class:`~gen1.training.data.JointBatchPlan` from the
micro-step index alone, so the data position is one integer and resuming is exact.

Work split: rendering and depth normalisation run per clip in ``__getitem__`` (DataLoader workers when
``data.num_workers > 0``; the renderer casts all frames of a clip at once); VAE and CLIP run once per
micro-batch on all its frames together (:class:`SyntheticEncoder`, in chunks of ``encode_batch`` frames).
"""

from __future__ import annotations


import torch

from gen1.training.batch import Clips, RenderedClips
from gen1.training.config import SyntheticDataConfig


def render_seed(seed: int, num_frames: int, size: int) -> dict:
    """Scene and style ``seed`` rendered: ``frames (F, 3, size, size)`` in [0, 1] and per-clip normalised inverse
    depth ``depth (F, 1, size, size)`` (the fields of :class:`~gen1.training.batch.RenderedClips`, one clip)."""
    from gen1.depth import normalize_z_depth
    from gen1.synthetic import render, sample_scene, sample_style

    frames, z_depth = render(sample_scene(seed), sample_style(seed), num_frames, size, size)
    return {"frames": frames, "depth": normalize_z_depth(z_depth)}


class SyntheticClips(torch.utils.data.Dataset):
    """Raw rendered clips of the training seed range (see the module docstring for the item layout).

    Item ``i`` is ``{"frames": (F,3,H,W), "depth": (F,1,H,W), "is_image": bool}`` with ``F = 1`` for images.
    """

    def __init__(self, config: SyntheticDataConfig):
        self.config = config
        self.num_scenes = int(config.num_scenes)
        self.is_image = [False] * self.num_scenes + [True] * self.num_scenes

    def seed_of(self, index: int) -> int:
        return self.config.seed_offset + index % self.num_scenes

    def __len__(self) -> int:
        return 2 * self.num_scenes

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        is_image = index >= self.num_scenes
        item = render_seed(self.seed_of(index), 1 if is_image else self.config.frames, self.config.size)
        item["is_image"] = is_image
        return item


class SyntheticEncoder:
    """:class:`~gen1.training.batch.RenderedClips` -> :class:`~gen1.training.batch.Clips` (see the module)."""

    def __init__(self, vae, content_encoder, *, content_frames: str = "all", batch: int = 16):
        if content_frames not in ("all", "one"):
            raise ValueError(f"data.synthetic.content_frames must be 'all' or 'one', got {content_frames!r}")
        self.vae, self.content = vae, content_encoder
        self.content_frames = content_frames
        self.batch = batch

    @property
    def content_dim(self) -> int:
        return int(self.content.embedding_dim)

    @torch.no_grad()
    def __call__(self, clips: RenderedClips, generator=None, device=None) -> Clips:
        """``generator``: one ``torch.Generator`` for the batch or a sequence of one per clip."""
        from gen1.training.encoding import encode_clips

        frames = clips.frames
        b, f = frames.shape[:2]
        chosen = None  # content: every frame's embedding
        if self.content_frames == "one" and f > 1:
            if generator is None or isinstance(generator, torch.Generator):
                pick = torch.randint(0, f, (b,), generator=generator)
            else:  # one generator per sample (the trainer's slot generators)
                pick = torch.cat([torch.randint(0, f, (1,), generator=g) for g in generator])
            chosen = frames[torch.arange(b), pick][:, None]  # (B, 1, 3, H, W): one frame per clip
        encoded = encode_clips(self.vae, self.content, frames, clips.depth, content_frames=chosen,
                               chunk_size=self.batch)
        return encoded.to(device or next(self.vae.parameters()).device)
