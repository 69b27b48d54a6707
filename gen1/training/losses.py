"""The training objective as one module, so DDP/FSDP see a single forward per micro-batch.

A joint batch has a video sub-batch (``F`` frames, temporal layers on) and an image sub-batch (1 frame,
``image_mode=True``: the temporal layers are gated off, the network is the image model). Both go through
the UNet inside :meth:`DiffusionObjective.forward`; wrapping the UNet this way lets ``accelerator.prepare``
wrap the whole objective, so DistributedDataParallel reduces gradients once after both passes.
The loss is the per-sample MSE between prediction and target, averaged over all samples of both kinds.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


class DiffusionObjective(torch.nn.Module):
    """``forward(video, image) -> (loss, per-kind sums)``; sub-batches come from ``noise.draw_conditioning``."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, video: Optional[dict] = None, image: Optional[dict] = None):
        total = None
        count = 0
        parts = {}
        for kind, sub, image_mode in (("video", video, False), ("image", image, True)):
            if sub is None:
                continue
            b = sub["noisy"].shape[0]
            # a plain bool gates the whole sub-batch, decided on the host (no device sync per step)
            pred = self.unet(sub["noisy"], sub["timesteps"], sub["context"], image_mode=image_mode).sample
            per_sample = F.mse_loss(pred.float(), sub["target"].float(), reduction="none").mean(dim=(1, 2, 3, 4))
            parts[kind] = per_sample.detach()
            total = per_sample.sum() if total is None else total + per_sample.sum()
            count += b
        if total is None:
            raise ValueError("empty batch: neither video nor image samples")
        return total / count, parts
