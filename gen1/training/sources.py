"""Where training batches come from: cached shards, or synthetic scenes encoded on the fly.

:func:`build_dataset` turns ``data.source`` into a :class:`TrainingData`: the dataset, the batch part its items
stack into, and how a collated micro-batch becomes :class:`~gen1.training.batch.Clips` on the device (a move for
shards; VAE and CLIP for rendered scenes). It also loads the frozen encoders the run needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from gen1.training.batch import Clips, JointBatch, RenderedClips
from gen1.training.components import load_content, load_vae
from gen1.training.config import Config
from gen1.training.shards import ShardDataset
from gen1.training.synthetic import SyntheticClips, SyntheticEncoder
from gen1.training.validation import held_out_from_shards, held_out_synthetic


@dataclass
class TrainingData:
    """The dataset, the size of its content embeddings, and how its micro-batches are encoded."""

    dataset: object
    content_dim: int
    encoder: Optional[object] = None  # synthetic: a SyntheticEncoder; shards: None (already encoded)
    vae: Optional[torch.nn.Module] = None
    content_encoder: Optional[torch.nn.Module] = None

    @property
    def part(self) -> type:
        """What the dataset's items stack into: :class:`Clips` (shards) or :class:`RenderedClips` (scenes)."""
        return Clips if self.encoder is None else RenderedClips

    def encode(self, batch: JointBatch, generators: JointBatch, device) -> JointBatch[Clips]:
        """A collated micro-batch as :class:`Clips` on ``device`` (``generators``: each part's per-sample
        generators for the data draws, e.g. which frame gives a rendered clip its content)."""
        if self.encoder is None:
            return batch.map(lambda clips, _: clips.to(device))
        return batch.map(lambda clips, image_mode: self.encoder(
            clips, generators.image if image_mode else generators.video, device=device))


def encoder_dtype(config: Config, device) -> torch.dtype:
    """The frozen encoders run in bf16 on CUDA when the run trains in bf16, else float32."""
    if torch.device(device).type == "cuda" and config.train.mixed_precision == "bf16":
        return torch.bfloat16
    return torch.float32


def load_frozen_vae(config: Config, device):
    """The VAE from ``model.vae`` (default ``model.base``), frozen, in eval mode."""

    vae = load_vae(config.model.vae or config.model.base, device, encoder_dtype(config, device),
                   what="model.vae" if config.model.vae else "model.base")
    return vae.requires_grad_(False)


def load_frozen_content(config: Config, device):
    """The content encoder from ``model.content_encoder`` (default ``model.base/content_encoder``)."""

    encoder = load_content(config.model.base, config.model.content_encoder or None, device,
                           what="model.content_encoder")
    return encoder.requires_grad_(False)


def build_dataset(config: Config, device="cpu") -> TrainingData:
    """The training data for ``data.source``: cached shards, or synthetic scenes encoded on the fly."""
    needs_vae = config.validation.every > 0 and config.validation.samples
    if config.data.source == "shards":

        dataset = ShardDataset(config.data.shards)
        vae = load_frozen_vae(config, device) if needs_vae else None
        return TrainingData(dataset, dataset.content_dim, vae=vae)
    if config.data.source == "synthetic":

        syn = config.data.synthetic
        vae, content = load_frozen_vae(config, device), load_frozen_content(config, device)
        encoder = SyntheticEncoder(vae, content, content_frames=syn.content_frames, batch=syn.encode_batch)
        return TrainingData(SyntheticClips(syn), encoder.content_dim, encoder=encoder, vae=vae,
                            content_encoder=content)
    raise ValueError(f"data.source must be 'shards' or 'synthetic', got {config.data.source!r}")


def held_out(config: Config, data: TrainingData):
    """The fixed validation inputs of the run's data (:class:`~gen1.training.validation.HeldOut`)."""

    if data.encoder is not None:
        return held_out_synthetic(config, data.encoder)
    return held_out_from_shards(data.dataset, data.vae)
