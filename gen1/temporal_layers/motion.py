"""AnimateDiff motion modules as the temporal layers of a :class:`gen1.unet.VideoUNet`.

The modules are diffusers' own: a ``MotionAdapter`` is built from its config (its ``__init__`` decides every
``AnimateDiffTransformer3D``'s shape) and its modules are moved into gen1 wrappers, one after each diffusers
module that ``UNetMotionModel`` follows with a motion module:

* down and up blocks with spatial transformers (``CrossAttnDownBlock2D``, ``CrossAttnUpBlock2D``): after
  each transformer (resnet -> transformer -> motion module);
* down and up blocks without (``DownBlock2D``, ``UpBlock2D``): after each resnet;
* the mid block (``UNetMidBlock2DCrossAttn``), when the adapter has one: after its transformer, before the
  resnet that follows it.

Adapter module ``down_blocks.{i}.motion_modules.{j}`` is the ``j``-th of those places in down block ``i``
(likewise ``mid_block.*`` and ``up_blocks.{i}.*``, whose blocks hold one layer more, as in the UNet). A wrapped
module at ``<path>`` keeps the image weights at ``<path>.spatial.*`` and holds the motion module at
``<path>.temporal.*``, the same key scheme as gen1's native temporal layers.

The gate: ``AnimateDiffTransformer3D`` adds its own residual, so video-mode clips get exactly its output and
image-mode clips exactly their input (:func:`apply_gated_replace`); with every sample in image mode the model
is the image UNet, bit for bit.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Mapping, Sequence

import torch

from gen1.temporal_layers.context import FrameContext, apply_gated_replace
from gen1.temporal_layers.wrappers import ResnetWrapper, TemporalWrapper, TransformerWrapper

ANIMATEDIFF = "animatediff"

# UNet2DConditionModel block types whose UNetMotionModel counterparts place motion modules as above
_DOWN_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")
_MID_BLOCK = "UNetMidBlock2DCrossAttn"


def _gated_motion_module(wrapper: TemporalWrapper, hidden_states: torch.Tensor) -> torch.Tensor:
    def run(video: torch.Tensor, num_frames: int) -> torch.Tensor:
        return wrapper.temporal(video, num_frames=num_frames)

    return apply_gated_replace(hidden_states, run, wrapper._frame_context)


class ResnetWithMotionModule(ResnetWrapper):
    """``ResnetBlock2D`` followed by a gated AnimateDiff motion module (blocks without spatial transformers)."""

    apply_temporal = _gated_motion_module


class TransformerWithMotionModule(TransformerWrapper):
    """``Transformer2DModel`` followed by a gated AnimateDiff motion module."""

    apply_temporal = _gated_motion_module


# ---------------------------------------------------------------------------------------------- configs
def _motion_adapter_class():
    from diffusers import MotionAdapter  # lazy: diffusers is heavy and only this path needs it

    return MotionAdapter


def full_motion_adapter_config(config: Mapping[str, Any]) -> dict:
    """A ``MotionAdapter`` config as plain JSON values with every argument spelled out.

    diffusers' bookkeeping entries (``_class_name``, ``_diffusers_version``, ...) are dropped; an argument
    ``MotionAdapter`` does not take is refused with a ``ValueError`` naming it.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"a motion adapter config must be a dict, got {type(config).__name__}")
    parameters = inspect.signature(_motion_adapter_class().__init__).parameters
    defaults = {name: p.default for name, p in parameters.items() if name != "self"}
    given = {k: v for k, v in config.items() if not k.startswith("_")}
    unknown = sorted(k for k in given if k not in defaults)
    if unknown:
        raise ValueError(
            f"motion adapter config has unknown argument {unknown[0]!r} (MotionAdapter takes {sorted(defaults)})"
        )
    return json.loads(json.dumps({**defaults, **given}, sort_keys=True))


def _per_block(value: int | Sequence[int], blocks: int) -> list[int]:
    return [value] * blocks if isinstance(value, int) else list(value)


def check_motion_adapter_fits(unet_config: Mapping[str, Any], adapter_config: Mapping[str, Any]) -> None:
    """Refuse a motion adapter that does not fit an image UNet, from the two configs alone.

    Raises ``ValueError`` naming the setting on both sides: block widths, motion layers per block against the
    UNet's layers per block, a mid-block motion module without a cross-attention mid block, GroupNorm groups
    (``UNetMotionModel`` normalises motion modules with the UNet's groups, so they must be the adapter's),
    block types that ``UNetMotionModel`` does not reproduce, and PIA-style adapters (their own ``conv_in``).
    Reads configs only, so it runs before any weight is loaded.
    """
    adapter = full_motion_adapter_config(adapter_config)
    unet_widths = list(unet_config["block_out_channels"])
    if adapter["block_out_channels"] != unet_widths:
        raise ValueError(
            f"motion adapter block_out_channels={adapter['block_out_channels']} do not match the image UNet's "
            f"block_out_channels={unet_widths}"
        )
    for field, supported in (("down_block_types", _DOWN_BLOCKS), ("up_block_types", _UP_BLOCKS)):
        for block_type in unet_config[field]:
            if block_type not in supported:
                raise ValueError(
                    f"the image UNet's {field} include {block_type!r}; motion modules go into {list(supported)} "
                    "only (the blocks diffusers' UNetMotionModel reproduces)"
                )
    blocks = len(unet_widths)
    unet_layers = _per_block(unet_config.get("layers_per_block", 2), blocks)
    adapter_layers = _per_block(adapter["motion_layers_per_block"], blocks)
    if adapter_layers != unet_layers:
        raise ValueError(
            f"motion adapter motion_layers_per_block={adapter_layers} do not match the image UNet's "
            f"layers_per_block={unet_layers} (up blocks hold one layer more on both sides)"
        )
    if adapter["use_motion_mid_block"]:
        mid_type = unet_config.get("mid_block_type", _MID_BLOCK)
        if mid_type != _MID_BLOCK:
            raise ValueError(
                f"motion adapter has a mid-block motion module (use_motion_mid_block=True) but the image UNet's "
                f"mid_block_type is {mid_type!r}, not {_MID_BLOCK!r}"
            )
        if adapter["motion_mid_block_layers_per_block"] != 1:
            raise ValueError(
                f"motion adapter motion_mid_block_layers_per_block={adapter['motion_mid_block_layers_per_block']} "
                "but the image UNet's mid block has 1 spatial transformer"
            )
    unet_groups = unet_config.get("norm_num_groups", 32)
    if adapter["motion_norm_num_groups"] != unet_groups:
        raise ValueError(
            f"motion adapter motion_norm_num_groups={adapter['motion_norm_num_groups']} does not match the image "
            f"UNet's norm_num_groups={unet_groups} (diffusers' UNetMotionModel runs motion modules with the UNet's)"
        )
    if adapter["conv_in_channels"]:
        raise ValueError(
            f"motion adapter conv_in_channels={adapter['conv_in_channels']}: adapters with their own conv_in "
            "(PIA) are not supported"
        )


# ---------------------------------------------------------------------------------------------- placement
def motion_module_placement(unet: torch.nn.Module, *, mid_block: bool) -> dict[str, str]:
    """Where each motion module of a ``MotionAdapter`` goes in ``unet`` (a ``UNet2DConditionModel``).

    Returns ``{adapter module name: UNet module path}``, e.g. ``{"down_blocks.0.motion_modules.0":
    "down_blocks.0.attentions.0", ..., "up_blocks.0.motion_modules.2": "up_blocks.0.resnets.2"}``, in
    module order. ``mid_block``: whether the adapter has a mid-block motion module.
    """

    def places(prefix: str, block: torch.nn.Module) -> list[str]:
        attentions = getattr(block, "attentions", None)
        if attentions:
            return [f"{prefix}.attentions.{j}" for j in range(len(attentions))]
        return [f"{prefix}.resnets.{j}" for j in range(len(block.resnets))]

    groups = [(f"down_blocks.{i}", block) for i, block in enumerate(unet.down_blocks)]
    if mid_block:
        groups.append(("mid_block", unet.mid_block))
    groups += [(f"up_blocks.{i}", block) for i, block in enumerate(unet.up_blocks)]
    return {
        f"{prefix}.motion_modules.{j}": path
        for prefix, block in groups
        for j, path in enumerate(places(prefix, block))
    }


def insert_motion_modules(
    unet: torch.nn.Module, context: FrameContext, adapter_config: Mapping[str, Any]
) -> dict[str, str]:
    """Wrap ``unet`` in place with the motion modules of a ``MotionAdapter`` built from ``adapter_config``.

    The modules are freshly constructed by diffusers (load weights afterwards, e.g. with
    :func:`adapter_key_to_unet_key`). Returns :func:`motion_module_placement`.
    """
    from diffusers.models.resnet import ResnetBlock2D  # lazy: diffusers is heavy and only this path needs it

    # lazy: diffusers is heavy and only this path needs it
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    check_motion_adapter_fits(unet.config, adapter_config)
    config = full_motion_adapter_config(adapter_config)
    adapter = _motion_adapter_class()(**config)
    placement = motion_module_placement(unet, mid_block=config["use_motion_mid_block"])
    built = [name for name, module in adapter.named_modules() if isinstance(module, AnimateDiffTransformer3D)]
    if sorted(built) != sorted(placement):  # the config check above makes this an internal error
        raise RuntimeError(f"motion adapter modules {sorted(built)} do not match their places {sorted(placement)}")
    for adapter_name, path in placement.items():
        parent_name, _, child = path.rpartition(".")
        parent = unet.get_submodule(parent_name)
        spatial = getattr(parent, child)
        wrapper_class = ResnetWithMotionModule if isinstance(spatial, ResnetBlock2D) else TransformerWithMotionModule
        setattr(parent, child, wrapper_class(spatial, adapter.get_submodule(adapter_name), context))
    return placement


def adapter_key_to_unet_key(key: str, placement: Mapping[str, str]) -> str:
    """``down_blocks.0.motion_modules.0.proj_in.weight`` -> ``down_blocks.0.attentions.0.temporal.proj_in.weight``.

    Raises ``ValueError`` naming the key when it belongs to no motion module of the placement.
    """
    parts = key.split(".")
    for cut in (3, 4):  # "mid_block.motion_modules.J" or "down_blocks.I.motion_modules.J"
        prefix = ".".join(parts[:cut])
        if prefix in placement and len(parts) > cut:
            return ".".join([placement[prefix], "temporal", *parts[cut:]])
    raise ValueError(f"motion adapter key {key!r} belongs to no motion module of this model")
