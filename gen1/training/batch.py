"""Typed training batches: what the data sources, the draws, the objective and the trainer pass each other.

A micro-batch is a :class:`JointBatch` of two parts, ``video`` (clips of ``F`` frames, temporal layers on) and
``image`` (1-frame clips trained in image mode, temporal layers gated off); either may be absent (see
:mod:`gen1.training.data`). A part changes type as a micro-step goes on:

* :class:`RenderedClips` -- pixels and exact depth from the scene renderer (``data.source: synthetic``);
* :class:`Clips`         -- latents, depth and content, as cached in shards: what the model learns from
  (:func:`gen1.training.encoding.encode_clips` turns pixels into these);
* :class:`NoisedClips`   -- the network's inputs and target after the micro-step's random draws
  (:func:`gen1.training.draws.draw_inputs`), with the draws that made them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Optional, TypeVar

import torch


@dataclass
class Clips:
    """Encoded clips of one kind (all the same length ``F``)."""

    latents: torch.Tensor  # (B, C, F, h, w): z_0, the VAE convention of gen1.conditioning.encode_latents
    depth: torch.Tensor  # (B, 1, F, h, w): per-clip normalised inverse depth in [0, 1] on the latent grid
    content: torch.Tensor  # (B, F, D): the CLIP image embedding of every frame

    def __len__(self) -> int:
        return self.latents.shape[0]

    def to(self, device) -> "Clips":
        return Clips(self.latents.to(device), self.depth.to(device), self.content.to(device))


@dataclass
class RenderedClips:
    """Rendered clips of one kind, before encoding."""

    frames: torch.Tensor  # (B, F, 3, H, W) in [0, 1]
    depth: torch.Tensor  # (B, F, 1, H, W): per-clip normalised inverse depth in [0, 1]

    def __len__(self) -> int:
        return self.frames.shape[0]


@dataclass
class NoisedClips:
    """One part of a micro-batch as the network sees it, and the draws that made it."""

    noisy: torch.Tensor  # (B, C + S, F, h, w): z_t with the structure channels concatenated (S = 0: a ControlNet)
    timesteps: torch.Tensor  # (B,)
    context: torch.Tensor  # (B, 1, D): each clip's content (or the null content) as cross-attention context
    target: torch.Tensor  # (B, C, F, h, w): what the network must predict (noise or velocity)
    image_mode: bool  # True: the temporal layers are gated off (the image model)
    dropped: torch.Tensor  # (B,) bool: content replaced by the null content (classifier-free guidance)
    levels: torch.Tensor  # (B,) int: the structure level t_s each clip's depth was obscured to
    # public route: the ControlNet's (down residuals, mid residual) for these inputs, added to the UNet's skips
    controlnet_residuals: Optional[tuple] = None
    # a model with inpainting input: its channels (B, 1 + C, F, h, w) (gen1.conditioning.inpainting_input); None:
    # nothing known (DiffusionObjective gives such a model gen1.conditioning.nothing_known)
    known: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.noisy.shape[0]


Part = TypeVar("Part")
Other = TypeVar("Other")


@dataclass
class JointBatch(Generic[Part]):
    """The ``video`` and ``image`` parts of one micro-batch (``None`` where the batch has none of that kind)."""

    video: Optional[Part] = None
    image: Optional[Part] = None

    def parts(self) -> Iterator[tuple[bool, Part]]:
        """``(image_mode, part)`` of the parts present, video first."""
        for image_mode, part in ((False, self.video), (True, self.image)):
            if part is not None:
                yield image_mode, part

    def map(self, fn: Callable[[Part, bool], Other]) -> "JointBatch[Other]":
        """A batch of ``fn(part, image_mode)`` for each part present (video first: the order of any draws)."""
        return JointBatch(*(None if part is None else fn(part, image_mode)
                            for image_mode, part in ((False, self.video), (True, self.image))))

    def count(self) -> dict[str, int]:
        """Clips per kind: ``{"video": n, "image": n}``."""
        return {"video": len(self.video) if self.video is not None else 0,
                "image": len(self.image) if self.image is not None else 0}


def collate_joint(items: list[dict], part: type = Clips) -> JointBatch:
    """Stack dataset items into a :class:`JointBatch` of ``part`` (:class:`Clips` or :class:`RenderedClips`).

    Each item is a dict holding the per-clip tensors named by ``part``'s fields (without the batch dimension)
    and ``is_image``; images go to ``image``, the rest to ``video``.
    """
    names = [f.name for f in dataclasses.fields(part)]

    def stack(is_image: bool):
        chosen = [it for it in items if it["is_image"] == is_image]
        return part(**{name: torch.stack([it[name] for it in chosen]) for name in names}) if chosen else None

    return JointBatch(video=stack(False), image=stack(True))
