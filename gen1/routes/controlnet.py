"""The public-checkpoint route: structure through a depth ControlNet, content through cross-attention.

This is how an SD-1.5-family UNet with AnimateDiff motion modules (a :class:`gen1.unet.VideoUNet` of the
``animatediff`` kind, no structure channels) and a depth ControlNet of the ``control_v11f1p_sd15_depth`` layout
become a Gen-1 model: the ControlNet sees gen1's normalised depth obscured to t_s (three equal channels in
[0, 1], the ControlNet's input convention), and its residuals are added to the UNet's skip connections.

Per step and window there is ONE ControlNet call and ONE UNet call. The ControlNet is a per-frame image model,
so the guidance terms that differ only in the temporal gate (``video_null`` and ``image_null``) need the same
residuals: the ControlNet runs once per *distinct content* (at most two: c and the null content) and its
residuals are gathered to the UNet's batch of terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import repeat

from gen1.guidance import GuidancePlan


@dataclass
class ControlNetRoute:
    """Guided prediction of a UNet + ControlNet pair for one window of frames.

    ``conditioning``: the ControlNet's input for the whole video, ``(F, 3, H, W)`` float in [0, 1] at the output
    size. ``context`` / ``null_context``: ``(1, L, D)`` content and null content (text encoder hidden states).
    ``conditioning_scale``: multiplies the ControlNet's residuals (diffusers' ``controlnet_conditioning_scale``).
    ``added_cond_kwargs``: extra UNet inputs per content, e.g. IP-Adapter image embeddings (``None`` for none).
    """

    unet: torch.nn.Module
    controlnet: torch.nn.Module
    conditioning: torch.Tensor
    plan: GuidancePlan
    context: torch.Tensor
    null_context: torch.Tensor
    conditioning_scale: float = 1.0
    cross_attention_kwargs: dict | None = None

    def _controlnet_residuals(self, latents: torch.Tensor, timestep: torch.Tensor, frames: slice):
        """Residuals for every term of the plan, rows ``(term, frame)``; the ControlNet runs once per content."""
        uses_content = list(self.plan.uses_content())
        distinct = sorted(set(uses_content), reverse=True)  # True (content) first, then False (null)
        num_frames = latents.shape[2]
        dtype = self.controlnet.dtype
        sample = repeat(latents, "1 c f h w -> (n f) c h w", n=len(distinct)).to(dtype)
        hidden = torch.cat([self.context if cond else self.null_context for cond in distinct]).to(dtype)
        hidden = hidden.repeat_interleave(num_frames, dim=0)
        image = self.conditioning[frames].to(device=sample.device, dtype=dtype)
        image = repeat(image, "f c h w -> (n f) c h w", n=len(distinct))
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=hidden, controlnet_cond=image,
                                    conditioning_scale=self.conditioning_scale, return_dict=False)
        if len(distinct) == len(uses_content) and distinct == uses_content:
            return list(down), mid
        # gather: term i takes the rows of its content's ControlNet entry
        entry = [distinct.index(cond) for cond in uses_content]
        rows = torch.tensor([e * num_frames + f for e in entry for f in range(num_frames)], device=mid.device)
        return [residual.index_select(0, rows) for residual in down], mid.index_select(0, rows)

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, frames: slice) -> torch.Tensor:
        """Guided prediction ``(1, C, Fw, h, w)`` float32 for the window ``frames``."""
        plan = self.plan
        down, mid = self._controlnet_residuals(latents, timestep, frames)
        dtype = self.unet.dtype
        sample = repeat(latents, "b c f h w -> (n b) c f h w", n=plan.num_evaluations).to(dtype)
        hidden = torch.cat([self.context if cond else self.null_context for cond in plan.uses_content()]).to(dtype)
        gate = plan.image_mode()
        image_mode = list(gate) if any(gate) else None
        timesteps = timestep.reshape(1).expand(sample.shape[0]).to(sample.device)
        prediction = self.unet(sample, timesteps, encoder_hidden_states=hidden, image_mode=image_mode,
                               down_block_additional_residuals=[r.to(dtype) for r in down],
                               mid_block_additional_residual=mid.to(dtype),
                               cross_attention_kwargs=self.cross_attention_kwargs, return_dict=False)[0]
        return plan.combine(prediction)


def depth_to_controlnet_image(depth: torch.Tensor) -> torch.Tensor:
    """Depth ``(F, 1, H, W)`` in [0, 1] (1 = near) -> the depth ControlNet's input ``(F, 3, H, W)`` in [0, 1].

    ``control_v11f1p_sd15_depth`` was trained on MiDaS inverse depth rendered as a grey image (near = bright),
    which is what gen1's normalised depth is; the three channels are equal.
    """
    return repeat(depth.float().clamp(0, 1), "f 1 h w -> f c h w", c=3).contiguous()
