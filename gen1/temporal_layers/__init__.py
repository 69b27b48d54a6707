"""Temporal layers inserted into a pretrained image UNet: convolution and attention over frames, and the
per-sample image-mode gate that switches them off (see ``gen1.unet.VideoUNet``)."""

from gen1.temporal_layers.attention import ATTENTION_BACKENDS, TemporalTransformer, require_xformers
from gen1.temporal_layers.context import FrameContext, FrameState, apply_gated
from gen1.temporal_layers.conv import TemporalConv
from gen1.temporal_layers.wrappers import (
    ResnetWithTemporalConv,
    TransformerWithTemporalAttention,
    base_key_to_wrapped_key,
    insert_temporal_layers,
)

__all__ = [
    "ATTENTION_BACKENDS",
    "FrameContext",
    "FrameState",
    "ResnetWithTemporalConv",
    "TemporalConv",
    "TemporalTransformer",
    "TransformerWithTemporalAttention",
    "apply_gated",
    "base_key_to_wrapped_key",
    "insert_temporal_layers",
    "require_xformers",
]
