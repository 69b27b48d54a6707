"""Wrappers that add temporal layers after diffusers' own ``ResnetBlock2D`` and ``Transformer2DModel``.

diffusers' blocks are kept as they are: each wrapper holds the original module as ``spatial`` and its new
temporal layer as ``temporal``, and stands in the original's place inside the UNet. State-dict keys of a
wrapped module therefore change by one documented step: ``<path>.<rest>`` becomes
``<path>.spatial.<rest>`` (see :func:`base_key_to_wrapped_key`).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from gen1.temporal_layers.attention import TemporalTransformer
from gen1.temporal_layers.context import FrameContext, apply_gated
from gen1.temporal_layers.conv import TemporalConv

SPATIAL = "spatial"


class TemporalWrapper(nn.Module):
    """Holds diffusers' module as ``spatial`` and the temporal layer that follows it as ``temporal``.

    Subclasses say how the temporal layer is applied through the image-mode gate (:meth:`apply_temporal`);
    :class:`ResnetWrapper` and :class:`TransformerWrapper` say where (after which kind of diffusers module).
    """

    def __init__(self, spatial: nn.Module, temporal: nn.Module, context: FrameContext):
        super().__init__()
        self.spatial = spatial
        self.temporal = temporal
        self._frame_context = context

    def apply_temporal(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The temporal layer on ``hidden_states`` (batch ``(b f)``) for video-mode clips only."""
        raise NotImplementedError


class ResnetWrapper(TemporalWrapper):
    """``ResnetBlock2D`` followed by a gated temporal layer; same call signature.

    diffusers' down/up blocks gradient-checkpoint their resnets as a whole, so the temporal layer is
    checkpointed together with the resnet it follows.
    """

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.apply_temporal(self.spatial(input_tensor, temb, *args, **kwargs))


class TransformerWrapper(TemporalWrapper):
    """``Transformer2DModel`` followed by a gated temporal layer.

    Accepts exactly what the wrapped transformer accepts and returns the same type: its output object
    when it returns one, or a tuple ``(sample,)`` when called with ``return_dict=False``.
    """

    def forward(self, *args, **kwargs):
        output = self.spatial(*args, **kwargs)
        if isinstance(output, tuple):
            return (self.apply_temporal(output[0]),) + tuple(output[1:])
        return type(output)(sample=self.apply_temporal(output.sample))


class ResnetWithTemporalConv(ResnetWrapper):
    """``ResnetBlock2D`` followed by a gated residual :class:`TemporalConv`."""

    def apply_temporal(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return apply_gated(hidden_states, self.temporal, self._frame_context)


class TransformerWithTemporalAttention(TransformerWrapper):
    """``Transformer2DModel`` followed by a gated residual :class:`TemporalTransformer`."""

    def apply_temporal(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return apply_gated(hidden_states, self.temporal, self._frame_context)


def insert_temporal_layers(
    unet: nn.Module,
    context: FrameContext,
    *,
    max_frames: int,
    norm_num_groups: int,
    conv_kernel_size: int = 3,
    attention_head_dim: int = 64,
    num_layers: int = 1,
    ff_mult: int = 4,
    dropout: float = 0.0,
) -> list[str]:
    """Wrap every ``ResnetBlock2D`` and ``Transformer2DModel`` inside ``unet`` in place.

    Returns the dotted paths (relative to ``unet``) of the wrapped modules, in module order.
    """
    from diffusers.models.resnet import ResnetBlock2D  # lazy: diffusers is heavy and only this path needs it

    # lazy: diffusers is heavy and only this path needs it
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    targets = [
        (name, module)
        for name, module in unet.named_modules()
        if isinstance(module, (ResnetBlock2D, Transformer2DModel)) and name
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        if isinstance(module, ResnetBlock2D):
            temporal = TemporalConv(
                module.out_channels, kernel_size=conv_kernel_size, norm_num_groups=norm_num_groups, dropout=dropout
            )
            wrapper = ResnetWithTemporalConv(module, temporal, context)
        else:
            channels = module.config.in_channels
            temporal = TemporalTransformer(
                channels,
                max_frames=max_frames,
                attention_head_dim=attention_head_dim,
                num_layers=num_layers,
                ff_mult=ff_mult,
                norm_num_groups=norm_num_groups,
                dropout=dropout,
            )
            wrapper = TransformerWithTemporalAttention(module, temporal, context)
        setattr(parent, child, wrapper)
    return [name for name, _ in targets]


def base_key_to_wrapped_key(key: str, wrapped_paths: Iterable[str]) -> str:
    """Map a state-dict key of the image UNet to the key of the same tensor in the inflated UNet.

    ``down_blocks.0.resnets.0.conv1.weight`` -> ``down_blocks.0.resnets.0.spatial.conv1.weight`` when
    ``down_blocks.0.resnets.0`` was wrapped; keys outside wrapped modules are unchanged.
    """
    wrapped = wrapped_paths if isinstance(wrapped_paths, (set, frozenset)) else set(wrapped_paths)
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in wrapped:
            return ".".join(parts[:i] + [SPATIAL] + parts[i:])
    return key
