"""VideoUNet: a pretrained diffusers image UNet inflated into a video UNet.

The image ``UNet2DConditionModel`` is built from its own config and kept whole at ``self.unet``; temporal
layers are inserted by wrapping diffusers' modules (see ``gen1.temporal_layers.wrappers``):

* after every ``ResnetBlock2D`` a residual temporal convolution over frames,
* after every spatial ``Transformer2DModel`` a temporal transformer (self-attention over frames at each
  spatial location, learnable frame-position embedding up to ``max_frames``),

in down, mid and up blocks. Every temporal layer's output projection starts at zero and the structure
channels added to ``conv_in`` start at zero, so right after :meth:`VideoUNet.from_image_unet` the model
equals the image model applied frame by frame. A per-sample ``image_mode`` gate switches the temporal layers
off, which makes the same network the image model of the paper (guidance and joint image/video training).

Weight names: an image-UNet key ``<path>.<rest>`` inside a wrapped module ``<path>`` lives at
``unet.<path>.spatial.<rest>`` here; every other image-UNet key lives at ``unet.<key>``. New tensors are
``unet.<path>.temporal.*``, ``unet.conv_in.*`` (widened) and ``content_proj.*``.

A second kind of temporal layers: AnimateDiff motion modules (diffusers' own ``AnimateDiffTransformer3D``,
placed where ``UNetMotionModel`` places them; see ``gen1.temporal_layers.motion``), chosen by the config
field ``motion_adapter_config`` and built with :meth:`VideoUNet.from_image_unet_and_motion_adapter`. They sit
at ``unet.<path>.temporal.*`` too, behind the same image-mode gate.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from einops import rearrange, repeat
from torch import nn

from gen1.atomic import atomic_path
from gen1.ip_adapter import apply_ip_adapter, zero_state
from gen1.temporal_layers import (
    ANIMATEDIFF,
    ATTENTION_BACKENDS,
    FrameContext,
    FrameState,
    ResnetWithTemporalConv,
    TransformerWithTemporalAttention,
    adapter_key_to_unet_key,
    base_key_to_wrapped_key,
    check_motion_adapter_fits,
    full_motion_adapter_config,
    insert_motion_modules,
    insert_temporal_layers,
    load_motion_adapter,
    read_motion_adapter_config,
    require_xformers,
)
from gen1.weights import StrictLoadingMixin, check_state_dict

TEMPORAL_METADATA_KEY = "gen1.temporal_config"
# base-UNet config fields that decide the shapes of the new layers; recorded with save_new_layers
_BASE_SIGNATURE_FIELDS = (
    "out_channels",
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "cross_attention_dim",
    "transformer_layers_per_block",
)


@dataclass
class VideoUNetOutput(BaseOutput):
    """``sample``: (B, latent_channels, F, H, W), the model's prediction for every frame."""

    sample: torch.Tensor


def _json_normalise(value: Any) -> Any:
    """Tuples -> lists etc., so configs compare equal before and after a JSON round trip."""
    return json.loads(json.dumps(value, sort_keys=True))


class VideoUNet(StrictLoadingMixin, ModelMixin, ConfigMixin):
    """Video UNet made from a diffusers ``UNet2DConditionModel`` config (see the module docstring).

    Args:
        unet_config: the image UNet's config (``unet.config``); its ``in_channels`` is either the latent
            channels (structure channels are then added to ``conv_in``) or already latent + structure
            (SD-2-depth: nothing is added).
        structure_channels: input channels concatenated to the latents (depth: 1).
        inpainting_input: the model also takes what is known of the clean video, after the structure channels:
            where the source is known (1; 0 where the model draws) and the source latents there
            (:func:`gen1.conditioning.inpainting_input`), ``1 + latent`` channels more. A masked edit shows it
            the source around the region; any other edit tells it nothing is known (all zeros).
            :meth:`with_inpainting_input` adds these channels to a trained model.
        max_frames: longest clip the frame-position embedding covers.
        content_dim: dimension of the content embeddings callers pass; if it differs from the image UNet's
            ``cross_attention_dim`` a learned ``content_proj`` (Linear) maps it.
        temporal_attention_head_dim: channels per head of the temporal attention (heads = C // this, >= 1).
        temporal_num_layers: transformer blocks per temporal transformer.
        temporal_ff_mult: feed-forward expansion of those blocks.
        temporal_conv_kernel_size: odd kernel size of the temporal convolutions over frames.
        temporal_norm_num_groups: GroupNorm groups in temporal layers (default: the image UNet's).
        temporal_dropout: dropout inside temporal layers (training only).
        clip_length: the clip length (frames) the model was trained on, recorded by the trainer; the
            pipeline's default temporal window (None: unknown, the window defaults to ``max_frames``).
        ip_adapter_shapes: set by :func:`gen1.ip_adapter.apply_ip_adapter`: the shapes of the IP-Adapter's tensors,
            so that a saved model rebuilds its layers before its weights load (None: no IP-Adapter);
            ``ip_adapter_scale`` how strongly its reference images act.
        motion_adapter_config: the kind of temporal layers. None: gen1's native layers (the ``temporal_*``
            arguments above). A diffusers ``MotionAdapter`` config: AnimateDiff motion modules of that adapter
            (the ``temporal_*`` arguments are then unused; ``max_frames`` may not exceed the adapter's
            ``motion_max_seq_length``).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        unet_config: dict,
        structure_channels: int = 1,
        max_frames: int = 32,
        content_dim: Optional[int] = None,
        temporal_attention_head_dim: int = 64,
        temporal_num_layers: int = 1,
        temporal_ff_mult: int = 4,
        temporal_conv_kernel_size: int = 3,
        temporal_norm_num_groups: Optional[int] = None,
        temporal_dropout: float = 0.0,
        clip_length: Optional[int] = None,
        motion_adapter_config: Optional[dict] = None,
        ip_adapter_shapes: Optional[dict] = None,
        ip_adapter_scale: float = 1.0,
        inpainting_input: bool = False,
    ):
        super().__init__()
        if not isinstance(unet_config, Mapping):
            raise ValueError(f"unet_config must be a dict (a UNet2DConditionModel config), got {type(unet_config).__name__}")
        if structure_channels < 0:
            raise ValueError(f"structure_channels must be >= 0, got {structure_channels}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if clip_length is not None and not 1 <= clip_length <= max_frames:
            raise ValueError(f"clip_length must be in [1, max_frames={max_frames}], got {clip_length}")
        base = {k: v for k, v in dict(unet_config).items() if not k.startswith("_")}
        latent = base.get("out_channels", 4)
        base_in = base.get("in_channels", 4)
        in_channels = latent + structure_channels
        if base_in not in (latent, in_channels):
            raise ValueError(
                f"unet_config in_channels={base_in} fits neither the latents alone ({latent}) nor latents + "
                f"structure_channels ({in_channels}); check structure_channels={structure_channels}"
            )
        if inpainting_input:
            in_channels += 1 + latent  # the mask, then the known latents
        self.unet = UNet2DConditionModel(**{**base, "in_channels": in_channels})
        self._frame_context = FrameContext()
        if motion_adapter_config is not None:
            self._insert_motion_modules(motion_adapter_config, max_frames)
        else:
            self._wrapped_paths = insert_temporal_layers(
                self.unet,
                self._frame_context,
                max_frames=max_frames,
                norm_num_groups=temporal_norm_num_groups or base.get("norm_num_groups", 32),
                conv_kernel_size=temporal_conv_kernel_size,
                attention_head_dim=temporal_attention_head_dim,
                num_layers=temporal_num_layers,
                ff_mult=temporal_ff_mult,
                dropout=temporal_dropout,
            )
        cross = self.unet.config.cross_attention_dim
        self.content_proj = None
        if content_dim is not None and content_dim != cross:
            if not isinstance(cross, int):
                raise ValueError(f"content_dim={content_dim} needs an int cross_attention_dim, the UNet has {cross}")
            self.content_proj = nn.Linear(content_dim, cross)
        self._new_prefixes = ("unet.conv_in.", "content_proj.") + tuple(
            f"unet.{path}.temporal." for path in self._wrapped_paths
        )
        if ip_adapter_shapes is not None:  # a saved model with an IP-Adapter: its layers, filled by loading

            apply_ip_adapter(self, zero_state(ip_adapter_shapes), scale=ip_adapter_scale)

    def _insert_motion_modules(self, adapter_config: Mapping[str, Any], max_frames: int) -> None:
        config = full_motion_adapter_config(adapter_config)
        if max_frames > config["motion_max_seq_length"]:
            raise ValueError(
                f"max_frames={max_frames} exceeds the motion adapter's motion_max_seq_length="
                f"{config['motion_max_seq_length']}"
            )
        self.register_to_config(motion_adapter_config=config)
        self._motion_placement = insert_motion_modules(self.unet, self._frame_context, config)
        self._wrapped_paths = list(self._motion_placement.values())

    # ------------------------------------------------------------------ properties
    @property
    def image_unet(self) -> UNet2DConditionModel:
        """The wrapped diffusers image UNet (its spatial layers, with the temporal ones inserted in place)."""
        return self.unet

    @property
    def temporal_kind(self) -> str:
        """``"gen1"`` (native temporal convolutions and attention) or ``"animatediff"`` (motion modules)."""
        return "gen1" if self.config.motion_adapter_config is None else ANIMATEDIFF

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels

    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def inpainting_input(self) -> bool:
        """Whether the model takes the inpainting channels after its structure (see the class docstring)."""
        return bool(self.config.get("inpainting_input", False))

    @property
    def cross_attention_dim(self) -> int:
        return self.unet.config.cross_attention_dim

    @property
    def content_dim(self) -> int:
        return self.config.content_dim if self.config.content_dim is not None else self.cross_attention_dim

    @property
    def max_frames(self) -> int:
        return self.config.max_frames

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        image_mode: Optional[torch.Tensor] = None,
        return_dict: bool = True,
        *,
        class_labels: Optional[torch.Tensor] = None,
        added_cond_kwargs: Optional[dict[str, torch.Tensor]] = None,
        cross_attention_kwargs: Optional[dict[str, Any]] = None,
        down_block_additional_residuals: Optional[Sequence[torch.Tensor]] = None,
        mid_block_additional_residual: Optional[torch.Tensor] = None,
    ) -> VideoUNetOutput | tuple[torch.Tensor]:
        """Predict for every frame of ``sample`` (B, in_channels, F, H, W) = ``[z_t, structure]`` on dim 1.

        ``timestep``: scalar, 0-d or (B,) tensor. ``encoder_hidden_states``: (B, L, content_dim).
        ``image_mode``: bool (B,), True turns the temporal layers off for that sample (None: all video).
        ``class_labels`` / tensors in ``added_cond_kwargs`` with a leading batch dim B are repeated per frame.
        ``down_block_additional_residuals`` / ``mid_block_additional_residual``: a ControlNet's residuals, per
        image (batch B*F, clip-major), passed to the image UNet as diffusers' ControlNet pipelines pass them.
        """
        batch, frames = self._check_sample(sample)
        self._check_control_residuals(down_block_additional_residuals, mid_block_additional_residual, batch * frames)
        timesteps = self._check_timestep(timestep, batch, sample.device)
        context = self._check_content(encoder_hidden_states, batch)
        image_mode = self._check_image_mode(image_mode, batch)
        state = FrameState.from_image_mode(frames, image_mode, batch, device=sample.device)

        def per_frame(value):
            if isinstance(value, (list, tuple)):  # e.g. IP-Adapter image embeddings: one tensor per adapter
                return type(value)(per_frame(item) for item in value)
            if torch.is_tensor(value) and value.ndim >= 1 and value.shape[0] == batch:
                return value.repeat_interleave(frames, dim=0)
            return value

        if class_labels is not None:
            class_labels = per_frame(class_labels)
        if added_cond_kwargs is not None:
            added_cond_kwargs = {k: per_frame(v) for k, v in added_cond_kwargs.items()}
        with self._frame_context.active(state):
            out = self.unet(
                rearrange(sample, "b c f h w -> (b f) c h w"),
                repeat(timesteps, "b -> (b f)", f=frames),
                repeat(context, "b l d -> (b f) l d", f=frames),
                class_labels=class_labels,
                added_cond_kwargs=added_cond_kwargs,
                cross_attention_kwargs=cross_attention_kwargs,
                down_block_additional_residuals=down_block_additional_residuals,
                mid_block_additional_residual=mid_block_additional_residual,
                return_dict=False,
            )[0]
        out = rearrange(out, "(b f) c h w -> b c f h w", f=frames)
        return VideoUNetOutput(sample=out) if return_dict else (out,)

    def _check_sample(self, sample: torch.Tensor) -> tuple[int, int]:
        if not torch.is_tensor(sample) or sample.ndim != 5:
            shape = tuple(sample.shape) if torch.is_tensor(sample) else type(sample).__name__
            raise ValueError(f"sample must be a 5-D tensor (B, C, F, H, W), got {shape}")
        batch, channels, frames = sample.shape[:3]
        if channels != self.in_channels:
            raise ValueError(
                f"sample has {channels} channels, expected in_channels={self.in_channels} "
                f"({self.latent_channels} latent + {self.config.structure_channels} structure"
                + (f" + {1 + self.latent_channels} inpainting" if self.inpainting_input else "") + ")"
            )
        if not 1 <= frames <= self.max_frames:
            raise ValueError(f"sample has F={frames} frames, expected 1 <= F <= max_frames={self.max_frames}")
        return batch, frames

    def _check_control_residuals(
        self, down: Optional[Sequence[torch.Tensor]], mid: Optional[torch.Tensor], images: int
    ) -> None:
        """ControlNet residuals come together, one per down-block output, each with batch ``images`` (B*F)."""
        if down is None and mid is None:
            return
        if down is None or mid is None:
            raise ValueError(
                "down_block_additional_residuals and mid_block_additional_residual must be passed together "
                f"(got {'only the mid' if down is None else 'only the down'} residual)"
            )
        expected = 1 + sum(len(b.resnets) + (1 if b.downsamplers else 0) for b in self.unet.down_blocks)
        if not isinstance(down, (list, tuple)) or len(down) != expected:
            got = len(down) if isinstance(down, (list, tuple)) else type(down).__name__
            raise ValueError(
                f"down_block_additional_residuals must be {expected} tensors (one per down-block output), got {got}"
            )
        for name, value in [(f"down_block_additional_residuals[{i}]", r) for i, r in enumerate(down)] + [
            ("mid_block_additional_residual", mid)
        ]:
            if not torch.is_tensor(value) or value.ndim != 4 or value.shape[0] != images:
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                raise ValueError(f"{name} must be a (B*F={images}, C, H, W) tensor, got {shape}")

    @staticmethod
    def _check_timestep(timestep, batch: int, device: torch.device) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            if isinstance(timestep, bool) or not isinstance(timestep, (int, float)):
                raise ValueError(f"timestep must be a number or a tensor, got {type(timestep).__name__}")
            timestep = torch.tensor(timestep)
        timestep = timestep.to(device)
        if timestep.ndim == 0 or (timestep.ndim == 1 and timestep.shape[0] == 1):
            return timestep.reshape(1).expand(batch)
        if timestep.ndim == 1 and timestep.shape[0] == batch:
            return timestep
        raise ValueError(f"timestep must be a scalar or of shape ({batch},), got shape {tuple(timestep.shape)}")

    def _check_content(self, encoder_hidden_states: torch.Tensor, batch: int) -> torch.Tensor:
        ehs = encoder_hidden_states
        if not torch.is_tensor(ehs) or ehs.ndim != 3 or ehs.shape[0] != batch or ehs.shape[2] != self.content_dim:
            shape = tuple(ehs.shape) if torch.is_tensor(ehs) else type(ehs).__name__
            raise ValueError(
                f"encoder_hidden_states must have shape ({batch}, L, content_dim={self.content_dim}), got {shape}"
            )
        return self.content_proj(ehs) if self.content_proj is not None else ehs

    @staticmethod
    def _check_image_mode(image_mode, batch: int) -> Optional[torch.Tensor]:
        """The gate as a CPU bool tensor (B,); accepts a bool, a sequence of bools or a bool tensor.

        Kept on the host on purpose (see :meth:`FrameState.from_image_mode`): a gate the caller already holds
        as a list (the pipeline's guidance plan does) costs no device round trip.
        """
        if image_mode is None:
            return None
        if isinstance(image_mode, bool):
            return torch.full((batch,), image_mode, dtype=torch.bool)
        if isinstance(image_mode, (list, tuple)) and all(isinstance(g, bool) for g in image_mode):
            image_mode = torch.tensor(image_mode, dtype=torch.bool)
        if not torch.is_tensor(image_mode) or image_mode.dtype != torch.bool or tuple(image_mode.shape) != (batch,):
            desc = (
                f"{image_mode.dtype} tensor of shape {tuple(image_mode.shape)}"
                if torch.is_tensor(image_mode)
                else type(image_mode).__name__
            )
            raise ValueError(f"image_mode must be a bool tensor of shape ({batch},), got {desc}")
        return image_mode.cpu()

    # ------------------------------------------------------------------ building from an image UNet
    @classmethod
    def from_image_unet(
        cls,
        unet_or_path: UNet2DConditionModel | str | os.PathLike,
        *,
        structure_channels: int = 1,
        max_frames: int = 32,
        content_dim: Optional[int] = None,
        clip_length: Optional[int] = None,
        subfolder: Optional[str] = None,
        torch_dtype: Optional[torch.dtype] = None,
        **temporal_kwargs,
    ) -> "VideoUNet":
        """Inflate an image UNet (a ``UNet2DConditionModel`` or a diffusers folder, e.g. ``subfolder="unet"``).

        Image weights are copied exactly; new ``conv_in`` channels and all temporal output projections are
        zero, so the result equals the image UNet frame by frame. ``temporal_kwargs`` are the
        ``temporal_*`` config arguments.
        """
        base = cls._load_image_unet(unet_or_path, subfolder, torch_dtype)
        unknown = sorted(k for k in temporal_kwargs if not k.startswith("temporal_"))
        if unknown:
            raise ValueError(f"unknown VideoUNet argument(s) {unknown}")
        arguments = dict(
            unet_config=dict(base.config),
            structure_channels=structure_channels,
            max_frames=max_frames,
            content_dim=content_dim,
            clip_length=clip_length,
            **temporal_kwargs,
        )
        return cls._inflate(base, arguments, torch_dtype)

    @classmethod
    def from_image_unet_and_motion_adapter(
        cls,
        unet_or_path: UNet2DConditionModel | str | os.PathLike,
        motion_adapter: Any,
        *,
        structure_channels: int = 0,
        max_frames: Optional[int] = None,
        content_dim: Optional[int] = None,
        clip_length: Optional[int] = None,
        subfolder: Optional[str] = None,
        adapter_config: Mapping[str, Any] | str | os.PathLike | None = None,
        variant: Optional[str] = None,
        torch_dtype: Optional[torch.dtype] = None,
    ) -> "VideoUNet":
        """An image UNet with AnimateDiff motion modules as its temporal layers (the public-checkpoint route).

        ``motion_adapter``: a diffusers ``MotionAdapter``, a MotionAdapter folder (e.g.
        ``animatediff-motion-adapter-v1-5-2``) or an original AnimateDiff file (``mm_sd_v15_v2.ckpt``); see
        :func:`gen1.temporal_layers.load_motion_adapter` for ``adapter_config`` (an original file's config) and
        ``variant``. ``structure_channels`` defaults to 0: on this route structure enters through a ControlNet
        (pass its residuals to :meth:`forward`). ``max_frames`` defaults to the adapter's
        ``motion_max_seq_length``. Image and motion weights are copied exactly; in video mode the model
        computes what diffusers' ``UNetMotionModel.from_unet2d(unet, adapter)`` computes.

        The configs are checked against each other (``ValueError`` naming both sides) before any weight is read.
        """
        base_config = cls._image_unet_config(unet_or_path, subfolder)
        motion_config = read_motion_adapter_config(motion_adapter, config=adapter_config)
        check_motion_adapter_fits(base_config, motion_config)
        arguments = dict(
            unet_config=base_config,
            structure_channels=structure_channels,
            max_frames=motion_config["motion_max_seq_length"] if max_frames is None else max_frames,
            content_dim=content_dim,
            clip_length=clip_length,
            motion_adapter_config=motion_config,
        )
        with torch.device("meta"):  # every argument checked before the weights are read
            cls(**arguments)
        adapter = load_motion_adapter(motion_adapter, config=adapter_config, variant=variant)
        base = cls._load_image_unet(unet_or_path, subfolder, torch_dtype)
        return cls._inflate(base, {**arguments, "unet_config": dict(base.config)}, torch_dtype, motion_adapter=adapter)

    @staticmethod
    def _image_unet_config(unet_or_path: UNet2DConditionModel | str | os.PathLike, subfolder: Optional[str]) -> dict:
        """The image UNet's config, read without its weights."""
        if isinstance(unet_or_path, UNet2DConditionModel):
            return dict(unet_or_path.config)
        if not isinstance(unet_or_path, (str, os.PathLike)):
            raise ValueError(f"unet_or_path must be a UNet2DConditionModel or a folder, got {type(unet_or_path).__name__}")
        folder = Path(unet_or_path) / (subfolder or "")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no diffusers UNet config at '{folder / 'config.json'}' (unet_or_path={unet_or_path!s})")
        return dict(UNet2DConditionModel.load_config(folder))

    @classmethod
    def _load_image_unet(
        cls, unet_or_path: UNet2DConditionModel | str | os.PathLike, subfolder: Optional[str], torch_dtype
    ) -> UNet2DConditionModel:
        cls._image_unet_config(unet_or_path, subfolder)  # checks the argument
        if isinstance(unet_or_path, UNet2DConditionModel):
            return unet_or_path
        return UNet2DConditionModel.from_pretrained(unet_or_path, subfolder=subfolder, torch_dtype=torch_dtype)

    @classmethod
    def _built_without_init(cls, arguments: dict) -> "VideoUNet":
        """A VideoUNet of ``arguments`` on the meta device, its weights neither allocated nor initialised (they are
        overwritten next: an SD-size UNet takes tens of seconds to init on CPU); built for real when it has a
        non-persistent buffer, which no state dict fills."""
        with torch.device("meta"):
            model = cls(**arguments)
        persistent = set(model.state_dict())
        if any(name not in persistent for name, _ in model.named_buffers()):
            return cls(**arguments)
        return model

    @classmethod
    def _inflate(cls, base: UNet2DConditionModel, arguments: dict, torch_dtype, motion_adapter=None) -> "VideoUNet":
        """A VideoUNet of ``arguments`` holding ``base``'s weights (and ``motion_adapter``'s, when given)."""
        # Build without random-initialising the image weights that are overwritten next (an SD-size UNet takes
        # tens of seconds to init on CPU): construct on the meta device, allocate, init only the new layers.
        model = cls._built_without_init(arguments)
        if next(model.parameters()).is_meta:
            model = model.to_empty(device=base.device)
            model.reset_new_layers()
        model.load_image_unet_weights(base.state_dict())
        if motion_adapter is not None:
            model.load_motion_adapter_weights(motion_adapter)
        # nn.Module.to: ModelMixin.to warns about fp32-kept modules on every dtype cast, even when there are none
        return nn.Module.to(model, device=base.device, dtype=torch_dtype or base.dtype)

    def load_image_unet_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copy an image UNet's state dict into ``self.unet`` exactly (strict: every key and shape checked).

        ``conv_in`` may be narrower than ours by the structure channels: those extra input channels get zero.
        """
        own = self.unet.state_dict()  # shares storage with the parameters: copy_ below loads them
        wrapped = set(self._wrapped_paths)
        mapped = {}
        for key, value in state_dict.items():
            target = base_key_to_wrapped_key(key, wrapped)
            if target not in own:
                raise ValueError(f"image UNet key {key!r} (as {target!r}) has no counterpart in the VideoUNet")
            if key == "conv_in.weight" and value.shape[1] < own[target].shape[1] and value.shape[0] == own[target].shape[0]:
                widened = torch.zeros_like(own[target])
                widened[:, : value.shape[1]] = value.to(widened.dtype)
                value = widened
            if tuple(value.shape) != tuple(own[target].shape):
                raise ValueError(
                    f"image UNet key {key!r} has shape {tuple(value.shape)}, the VideoUNet expects {tuple(own[target].shape)}"
                )
            mapped[target] = value
        temporal = tuple(f"{path}.temporal." for path in self._wrapped_paths)
        missing = sorted(k for k in own if k not in mapped and not k.startswith(temporal))
        if missing:
            raise ValueError(f"image UNet state dict lacks key(s) {missing[:5]}")
        with torch.no_grad():
            for target, value in mapped.items():
                own[target].copy_(value)

    def load_motion_adapter_weights(self, adapter) -> None:
        """Copy a diffusers ``MotionAdapter``'s weights into the motion modules exactly.

        The adapter's config must be this model's ``motion_adapter_config`` and its state dict must map onto
        the motion modules key for key, shape for shape (``ValueError`` naming the difference).
        """
        if self.config.motion_adapter_config is None:
            raise ValueError("this VideoUNet has gen1's native temporal layers, not motion modules")
        theirs, mine = full_motion_adapter_config(adapter.config), self.config.motion_adapter_config
        for key in sorted(mine):
            if theirs[key] != mine[key]:
                raise ValueError(
                    f"motion adapter {key}={theirs[key]!r}, but this VideoUNet was built for {mine[key]!r}"
                )
        own = self.unet.state_dict()  # shares storage with the parameters and buffers: copy_ loads them
        mapped = {adapter_key_to_unet_key(k, self._motion_placement): v for k, v in adapter.state_dict().items()}
        prefixes = tuple(f"{path}.temporal." for path in self._wrapped_paths)
        check_state_dict({k: v for k, v in own.items() if k.startswith(prefixes)}, mapped, "motion adapter")
        with torch.no_grad():
            for key, value in mapped.items():
                own[key].copy_(value)

    def with_inpainting_input(self) -> "VideoUNet":
        """This model with the inpainting channels added to ``conv_in`` (see the class docstring): every weight
        copied, the new input channels zero, so it predicts exactly what this model predicts until it is
        fine-tuned to use them. A model that has them already is returned as it is."""
        if self.inpainting_input:
            return self
        config = {**{key: value for key, value in self.config.items() if not key.startswith("_")},
                  "inpainting_input": True}
        widened = self._built_without_init(config)
        state = {key: value.detach().clone() for key, value in self.state_dict().items()}  # no shared storage
        weight = state["unet.conv_in.weight"]
        extra = widened.unet.conv_in.weight.shape[1] - weight.shape[1]
        state["unet.conv_in.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], extra,
                                                                           *weight.shape[2:])], dim=1)
        widened.load_state_dict(state, strict=True, assign=True)
        return widened.train(self.training)

    # ------------------------------------------------------------------ new layers
    def reset_new_layers(self) -> None:
        """Initialise the temporal layers (zero output projections) and ``content_proj`` afresh."""
        for module in self.unet.modules():
            if isinstance(module, (ResnetWithTemporalConv, TransformerWithTemporalAttention)):
                module.temporal.reset_parameters()
        if self.content_proj is not None:
            self.content_proj.reset_parameters()

    def _is_new_key(self, name: str) -> bool:
        return name.startswith(self._new_prefixes)

    def new_layers_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters of every layer inflation added, by name: the temporal layers, the widened ``conv_in`` and
        ``content_proj`` (what :meth:`save_new_layers` writes)."""
        return {name: p for name, p in self.named_parameters() if self._is_new_key(name)}

    def new_layers_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters of :meth:`new_layers_state_dict`."""
        return iter(self.new_layers_state_dict().values())

    def _temporal_signature(self) -> dict:
        """What a temporal-layers file must agree on with the model it is loaded into.

        Training-only settings (``temporal_dropout``) are left out, and the GroupNorm group count is recorded
        as resolved, so layers trained with dropout, or saved with the default spelled out, load anywhere
        the layers themselves fit.
        """
        signature = {
            k: v
            for k, v in self.config.items()
            if k not in ("unet_config", "temporal_dropout") and not k.startswith("_")
        }
        signature["temporal_norm_num_groups"] = self.config.temporal_norm_num_groups or self.unet.config.get(
            "norm_num_groups", 32
        )
        if not signature.get("inpainting_input"):  # files saved before the option existed do not name it
            signature.pop("inpainting_input", None)
        signature["base"] = {k: self.unet.config.get(k) for k in _BASE_SIGNATURE_FIELDS}
        signature["base"]["in_channels"] = self.in_channels
        return _json_normalise(signature)

    def save_new_layers(self, path: str | os.PathLike) -> Path:
        """Write the layers inflation added alone to ``path`` (safetensors; their config goes in the metadata)."""
        from safetensors.torch import save_file  # lazy: safetensors is heavy and only this path needs it

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.new_layers_state_dict().items()}
        metadata = {"format": "pt", TEMPORAL_METADATA_KEY: json.dumps(self._temporal_signature(), sort_keys=True)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return Path(path)

    def load_new_layers(self, path: str | os.PathLike) -> None:
        """Load a :meth:`save_new_layers` file; config, keys and shapes must match (``ValueError`` naming them)."""
        from safetensors import safe_open  # lazy: safetensors is heavy and only this path needs it
        from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"temporal weights file not found: '{path}'")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except Exception as error:  # safetensors raises its own error types for a corrupt header
            raise ValueError(f"'{path}' is not a readable safetensors file: {error}") from None
        if TEMPORAL_METADATA_KEY not in metadata:
            raise ValueError(f"'{path}' has no '{TEMPORAL_METADATA_KEY}' metadata: not a gen1 temporal-layers file")
        saved = json.loads(metadata[TEMPORAL_METADATA_KEY])
        mine = self._temporal_signature()
        if bool(saved.get("inpainting_input")) != self.inpainting_input:  # named first: it also changes base's width
            which = ("with", "without") if saved.get("inpainting_input") else ("without", "with")
            raise ValueError(f"'{path}' holds the layers of a model {which[0]} inpainting input, this model is "
                             f"{which[1]} it" + (": load them into VideoUNet.with_inpainting_input(), or use the "
                                                 "run's export/unet folder" if which[0] == "with" else ""))
        for key in sorted((set(saved) | set(mine)) - {"clip_length"}):  # clip_length: what trained, not a shape
            if saved.get(key) != mine.get(key):
                raise ValueError(
                    f"'{path}': temporal config {key!r} is {saved.get(key)!r} in the file but {mine.get(key)!r} in the model"
                )
        tensors = load_file(str(path))
        params = self.new_layers_state_dict()
        check_state_dict(params, tensors, f"'{path}'")
        with torch.no_grad():
            for key, param in params.items():
                param.copy_(tensors[key])
        if saved.get("clip_length") is not None:  # the clip length those layers were trained on
            self.register_to_config(clip_length=saved["clip_length"])

    # ------------------------------------------------------------------ whole-model loading, training, attention
    def enable_gradient_checkpointing(self, gradient_checkpointing_func=None) -> None:
        """diffusers' gradient checkpointing over the whole model, temporal layers included.

        Temporal convolutions are re-run with the resnets that diffusers checkpoints; temporal transformers
        checkpoint their own blocks. The checkpoint function is wrapped so that re-runs during backward see the
        frame state of the forward call that produced them.
        """
        if gradient_checkpointing_func is None:

            def gradient_checkpointing_func(module, *args):
                return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)

        super().enable_gradient_checkpointing(self._frame_context.checkpointing_func(gradient_checkpointing_func))

    def set_attention_backend(self, backend: str) -> None:
        """Attention kernels for temporal and spatial attention: ``"sdpa"`` (PyTorch, default) or ``"xformers"``."""
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
        if backend == "xformers":
            require_xformers()
            self.enable_xformers_memory_efficient_attention()
        else:
            self.disable_xformers_memory_efficient_attention()
