"""The native Gen-1 route: ``VideoUNet([z_t, s], t, c)``, all guidance terms in one batched call."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import repeat

from gen1.guidance import GuidancePlan


@dataclass
class NativeRoute:
    """gen1's own model, with structure as input channels and content through cross-attention.

    ``structure``: the UNet's structure channels for the whole video ``(1, S, F, h, w)`` (already obscured and
    mapped by :func:`gen1.conditioning.video_structure`); ``context`` / ``null_context``: ``(1, L, D)`` content
    and null content; ``plan``: the guidance terms of every step (:mod:`gen1.guidance`).
    """

    unet: torch.nn.Module
    structure: torch.Tensor
    plan: GuidancePlan
    context: torch.Tensor
    null_context: torch.Tensor

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, frames: slice) -> torch.Tensor:
        """Guided prediction ``(1, C, Fw, h, w)`` float32 for the window ``frames``: ONE UNet call for all terms.

        Batch entry ``i`` is term ``plan.terms[i]``: the same ``[z_t, s]`` sample, the real or null content, and
        the image-mode gate set for the image-model term.
        """
        plan = self.plan
        dtype = self.unet.dtype
        sample = torch.cat([latents, self.structure[:, :, frames]], dim=1).to(dtype)
        sample = repeat(sample, "b c f h w -> (n b) c f h w", n=plan.num_evaluations)
        hidden = torch.cat([self.context if cond else self.null_context for cond in plan.uses_content()]).to(dtype)
        gate = plan.image_mode()
        image_mode = list(gate) if any(gate) else None  # host-side gate: no device sync per step
        timesteps = timestep.reshape(1).expand(sample.shape[0]).to(sample.device)
        prediction = self.unet(sample, timesteps, encoder_hidden_states=hidden, image_mode=image_mode,
                               return_dict=False)[0]
        return plan.combine(prediction)
