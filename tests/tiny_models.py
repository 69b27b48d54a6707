"""Tiny, randomly initialised diffusers models for CPU tests (no weights are ever downloaded).

The UNet configs mimic the three layouts gen1 must inflate:

* ``"sd1"``: SD 1.x layout: ``CrossAttnDownBlock2D``/``CrossAttnUpBlock2D``, an int ``attention_head_dim``,
  convolutional (not linear) projections in the spatial transformers.
* ``"sd2"``: SD 2.x layout: ``use_linear_projection=True``, per-block ``attention_head_dim`` tuple,
  ``upcast_attention=True``, a different ``cross_attention_dim``.
* ``"sd2-depth"``: the SD 2 depth layout: like ``"sd2"`` with 5 input channels (4 latent + 1 depth).

Other workers may ADD functions here for their own tiny models; existing ones must not change, since
tests across the project rely on their shapes.
"""

from __future__ import annotations

import torch

UNET_KINDS = ("sd1", "sd2", "sd2-depth")


def tiny_unet_config(kind: str = "sd1") -> dict:
    """Return a ``UNet2DConditionModel`` config dict of the given layout (block channels (16, 32))."""
    common = dict(
        sample_size=16,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
    )
    if kind == "sd1":
        return dict(common, in_channels=4, cross_attention_dim=32, attention_head_dim=4)
    if kind in ("sd2", "sd2-depth"):
        return dict(
            common,
            in_channels=5 if kind == "sd2-depth" else 4,
            cross_attention_dim=24,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            upcast_attention=True,
        )
    raise ValueError(f"kind must be one of {UNET_KINDS}, got {kind!r}")


def tiny_unet(kind: str = "sd1", seed: int = 0):
    """A randomly initialised tiny ``UNet2DConditionModel`` (float32, eval mode) of the given layout.

    diffusers zero-initialises nothing by default, so outputs are non-trivial functions of all inputs.
    Construction is seeded (the global RNG state is restored afterwards), so equal seeds give equal models.
    """
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**tiny_unet_config(kind))
    return unet.eval()


def tiny_vae(seed: int = 0):
    """A randomly initialised tiny ``AutoencoderKL``: 4 latent channels, spatial downscale factor 2."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=32,
        )
    return vae.eval()
