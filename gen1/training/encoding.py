"""Clips -> what training learns from: VAE latents, depth on the latent grid, CLIP image embeddings.

One function, :func:`encode_clips`, shared by ``gen1 preprocess`` (clips of real video, depth from an
estimator) and ``data.source: synthetic`` (rendered clips, exact depth), so cached and on-the-fly data follow
the same conventions:

* latents: :func:`gen1.conditioning.encode_latents` (posterior mean, shifted and scaled: exactly ``z_0``);
* depth: the caller's per-clip normalised inverse depth, area-resized to the latent grid
  (:func:`gen1.conditioning.depth_to_latent_grid`, as the pipeline resizes it at inference);
* content: the content encoder's CLIP image embedding of every frame, or of chosen frames (a reference, or
  one frame per clip repeated over the clip).
"""

from __future__ import annotations

from typing import Optional

import torch
from einops import rearrange, repeat

from gen1.conditioning import depth_to_latent_grid, encode_latents
from gen1.training.batch import Clips


@torch.no_grad()
def encode_clips(vae, content_encoder, frames: torch.Tensor, depth: torch.Tensor, *,
                 content_frames: Optional[torch.Tensor] = None, chunk_size: int = 8) -> Clips:
    """Encode ``B`` clips of ``F`` frames at once (VAE and CLIP forwards of ``chunk_size`` frames).

    ``frames``: ``(B, F, 3, H, W)`` in [0, 1]; ``depth``: ``(B, F, 1, H', W')`` per-clip normalised inverse depth
    in [0, 1] at any resolution; ``content_frames``: ``(B, K, 3, H'', W'')`` in [0, 1] with ``K == F`` (one
    embedding per frame) or ``K == 1`` (one embedding repeated over the clip), default ``frames``.
    Returns float32 :class:`~gen1.training.batch.Clips` on the VAE's device.
    """

    b, f = frames.shape[:2]
    if depth.shape[:3] != (b, f, 1):
        raise ValueError(f"depth must have shape ({b}, {f}, 1, H, W) for frames of shape {tuple(frames.shape)}, "
                         f"got {tuple(depth.shape)}")
    content_frames = frames if content_frames is None else content_frames
    if content_frames.shape[0] != b or content_frames.shape[1] not in (1, f):
        raise ValueError(f"content_frames must have shape ({b}, {f} or 1, 3, H, W), got {tuple(content_frames.shape)}")
    latents = encode_latents(vae, rearrange(frames, "b f c h w -> (b f) c h w"), chunk_size=chunk_size)
    grid = depth_to_latent_grid(rearrange(depth, "b f c h w -> (b f) c h w").float(), tuple(latents.shape[-2:]))
    flat = rearrange(content_frames, "b k c h w -> (b k) c h w")
    content = torch.cat([content_encoder.encode_image(chunk).float() for chunk in flat.split(chunk_size)])
    content = rearrange(content, "(b k) d -> b k d", b=b)
    if content.shape[1] != f:
        content = repeat(content[:, 0], "b d -> b f d", f=f)
    device = latents.device
    return Clips(latents=rearrange(latents, "(b f) c h w -> b c f h w", b=b),
                 depth=rearrange(grid, "(b f) c h w -> b c f h w", b=b).to(device),
                 content=content.to(device))
