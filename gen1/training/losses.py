"""The training objective as one module, so DDP/FSDP see a single forward per micro-batch.

A joint batch has a video part (``F`` frames, temporal layers on) and an image part (1 frame, ``image_mode``:
the temporal layers are gated off, the network is the image model). Both go through the UNet inside
:meth:`DiffusionObjective.forward`; wrapping the UNet this way lets ``accelerator.prepare`` wrap the whole
objective, so DistributedDataParallel reduces gradients once after both passes.
The loss is the per-sample MSE between prediction and target, averaged over all samples of both kinds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gen1.conditioning import nothing_known
from gen1.training.batch import JointBatch, NoisedClips


class DiffusionObjective(torch.nn.Module):
    """``forward(batch) -> loss`` for a :class:`~gen1.training.batch.JointBatch` of
    :class:`~gen1.training.batch.NoisedClips` (from :func:`gen1.training.draws.draw_joint`)."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet
        self.inpainting_input = bool(getattr(unet, "inpainting_input", False))

    def network_input(self, part: NoisedClips) -> torch.Tensor:
        """``part.noisy`` and, for a model with inpainting input, its channels (``part.known``, or nothing known:
        what an edit without a mask gives the model)."""
        if not self.inpainting_input:
            return part.noisy
        known = part.known if part.known is not None else nothing_known(part.noisy[:, : part.target.shape[1]])
        return torch.cat([part.noisy, known.to(part.noisy.dtype)], dim=1)

    def forward(self, batch: JointBatch[NoisedClips]) -> torch.Tensor:
        total = None
        count = 0
        for _, part in batch.parts():
            # a plain bool gates the whole part, decided on the host (no device sync per step)
            residuals = {}
            if part.controlnet_residuals is not None:  # the public route: structure through a ControlNet
                down, mid = part.controlnet_residuals
                residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
            pred = self.unet(self.network_input(part), part.timesteps, part.context, image_mode=part.image_mode,
                             **residuals).sample
            per_sample = F.mse_loss(pred.float(), part.target.float(), reduction="none").mean(dim=(1, 2, 3, 4))
            total = per_sample.sum() if total is None else total + per_sample.sum()
            count += len(part)
        if total is None:
            raise ValueError("empty batch: neither video nor image samples")
        return total / count
