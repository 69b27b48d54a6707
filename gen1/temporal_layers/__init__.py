"""Temporal layers inserted into a pretrained image UNet: convolution and attention over frames, AnimateDiff
motion modules, and the per-sample image-mode gate that switches them off (see ``gen1.unet.VideoUNet``)."""

from gen1.temporal_layers.attention import ATTENTION_BACKENDS, TemporalTransformer, require_xformers
from gen1.temporal_layers.context import FrameContext, FrameState, apply_gated, apply_gated_replace
from gen1.temporal_layers.conv import TemporalConv
from gen1.temporal_layers.motion import (
    ANIMATEDIFF,
    ResnetWithMotionModule,
    TransformerWithMotionModule,
    adapter_key_to_unet_key,
    check_motion_adapter_fits,
    full_motion_adapter_config,
    insert_motion_modules,
    motion_module_placement,
)
from gen1.temporal_layers.motion_loading import (
    infer_motion_adapter_config,
    load_motion_adapter,
    read_motion_adapter_config,
)
from gen1.temporal_layers.wrappers import (
    ResnetWithTemporalConv,
    ResnetWrapper,
    TemporalWrapper,
    TransformerWithTemporalAttention,
    TransformerWrapper,
    base_key_to_wrapped_key,
    insert_temporal_layers,
)

__all__ = [
    "ANIMATEDIFF",
    "ATTENTION_BACKENDS",
    "FrameContext",
    "FrameState",
    "ResnetWithMotionModule",
    "ResnetWithTemporalConv",
    "ResnetWrapper",
    "TemporalConv",
    "TemporalTransformer",
    "TemporalWrapper",
    "TransformerWithMotionModule",
    "TransformerWithTemporalAttention",
    "TransformerWrapper",
    "adapter_key_to_unet_key",
    "apply_gated",
    "apply_gated_replace",
    "base_key_to_wrapped_key",
    "check_motion_adapter_fits",
    "full_motion_adapter_config",
    "infer_motion_adapter_config",
    "insert_motion_modules",
    "insert_temporal_layers",
    "load_motion_adapter",
    "motion_module_placement",
    "read_motion_adapter_config",
    "require_xformers",
]
