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

import re

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


def tiny_motion_unet_config(layers_per_block: int = 1) -> dict:
    """An SD-1.5-layout ``UNet2DConditionModel`` config that AnimateDiff motion modules fit (block channels
    (32, 64), 32 GroupNorm groups as in SD and AnimateDiff, cross-attention width 32)."""
    return dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=layers_per_block,
        norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=32,
        attention_head_dim=4,
    )


def tiny_motion_unet(layers_per_block: int = 1, seed: int = 0):
    """A randomly initialised tiny ``UNet2DConditionModel`` of :func:`tiny_motion_unet_config` (eval mode)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**tiny_motion_unet_config(layers_per_block))
    return unet.eval()


def tiny_motion_adapter_config(layers_per_block: int = 1, **overrides) -> dict:
    """A ``MotionAdapter`` config fitting :func:`tiny_motion_unet_config` (2 heads, frames up to 8)."""
    return dict(
        dict(
            block_out_channels=(32, 64),
            motion_layers_per_block=layers_per_block,
            motion_num_attention_heads=2,
            motion_norm_num_groups=32,
            motion_max_seq_length=8,
            use_motion_mid_block=True,
        ),
        **overrides,
    )


def tiny_motion_adapter(layers_per_block: int = 1, seed: int = 0, **overrides):
    """A randomly initialised tiny diffusers ``MotionAdapter`` (every output projection non-zero)."""
    from diffusers import MotionAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = MotionAdapter(**tiny_motion_adapter_config(layers_per_block, **overrides))
    return adapter.eval()


def _original_animatediff_key(key: str) -> str:
    """A diffusers ``MotionAdapter`` key in the original AnimateDiff layout (``mm_sd_v15_v2.ckpt``)."""
    module = r"^((?:down_blocks\.\d+|mid_block|up_blocks\.\d+)\.motion_modules\.\d+)\."
    key = re.sub(module, r"\1.temporal_transformer.", key)
    for diffusers_name, original_name in (
        (".attn1.", ".attention_blocks.0."),
        (".attn2.", ".attention_blocks.1."),
        (".norm1.", ".norms.0."),
        (".norm2.", ".norms.1."),
        (".norm3.", ".ff_norm."),
    ):
        key = key.replace(diffusers_name, original_name)
    return key


def original_animatediff_state_dict(adapter) -> dict:
    """``adapter``'s weights as an original AnimateDiff motion-module file holds them.

    The names invert diffusers' ``convert_animatediff_checkpoint_to_diffusers`` (checked key by key); each
    temporal attention gets its own copy of the sinusoidal position table (``attention_blocks.{0,1}
    .pos_encoder.pe``), as in the original files.
    """
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    original = {}
    for key, value in adapter.state_dict().items():
        if key.endswith(".pos_embed.pe"):
            block = _original_animatediff_key(key[: -len("pos_embed.pe")])
            for attention in (0, 1):
                original[f"{block}attention_blocks.{attention}.pos_encoder.pe"] = value.clone()
            continue
        name = _original_animatediff_key(key)
        if convert_animatediff_checkpoint_to_diffusers({name: None}) != {key: None}:
            raise AssertionError(f"{name!r} does not convert back to {key!r}")
        original[name] = value.clone()
    return original
