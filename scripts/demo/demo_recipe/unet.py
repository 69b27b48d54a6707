"""The demo's starting point for ``gen1 train``: a small random image ``UNet2DConditionModel`` plus the
training scheduler, in the Stable Diffusion folder layout (``unet/``, ``scheduler/``), so that the
standard ``model.base`` path inflates it with :meth:`gen1.unet.VideoUNet.from_image_unet`.

The base takes ``4 + 1`` input channels (latents + structure, the SD-2-depth layout), so
``from_image_unet`` adds nothing and the depth input starts with ordinary random weights. Zero-initialised
structure channels (identity at start) are right for a *pretrained* base; from scratch they grow too slowly
and the model learns to ignore depth (docs/demo.md).

Latents are 4x16x16 (64x64 frames, factor-4 VAE); cross-attention width = the content encoder's
embedding size (64), so no ``content_proj`` is needed. Attention (spatial cross-attention to the
content) only at 8x8 and 4x4: content is a global style, and attention at 16x16 would cost the most compute
for the least gain. Schedule: cosine (``squaredcos_cap_v2``) with v-prediction -- small models trained
briefly fit v targets more stably than epsilon at high noise levels, and the cosine schedule spends fewer
steps at near-clean noise levels that 16x16 latents do not need.
"""

from __future__ import annotations

from pathlib import Path

import torch

UNET_CONFIG = dict(
    sample_size=16, in_channels=5, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=64, attention_head_dim=4, norm_num_groups=16,
)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                        clip_sample=False)


def write_base(out: str | Path, *, cross_attention_dim: int = 64, seed: int = 0) -> Path:
    """Write ``OUT/unet`` (random image UNet) and ``OUT/scheduler`` (DDPM training schedule), atomically."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from gen1.atomic import atomic_directory

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**dict(UNET_CONFIG, cross_attention_dim=cross_attention_dim))
    with atomic_directory(out) as tmp:
        unet.save_pretrained(str(Path(tmp) / "unet"))
        DDPMScheduler(**SCHEDULER_CONFIG).save_pretrained(str(Path(tmp) / "scheduler"))
    return Path(out)
