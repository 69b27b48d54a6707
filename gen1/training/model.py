"""Load what training starts from, and choose which of its parameters train.

``model.base`` may be

* a Stable Diffusion directory (diffusers layout ``unet/ vae/ scheduler/``) whose ``unet`` is an image
  ``UNet2DConditionModel``: it is inflated with :meth:`gen1.unet.VideoUNet.from_image_unet`;
* a gen1 pipeline directory whose ``unet/`` is already a ``VideoUNet`` (continue training);
* a bare ``VideoUNet`` directory (``config.json`` + weights) -- it then needs a ``scheduler/`` beside it
  or inside it.

The noise scheduler used for training is a ``DDPMScheduler`` built from the base's scheduler config, so
``num_train_timesteps``, the beta schedule and ``prediction_type`` follow the base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from gen1.training.config import Config, ModelConfig
from gen1.unet import VideoUNet


def _class_name(config_file: Path) -> str:
    return json.loads(config_file.read_text(encoding="utf-8")).get("_class_name", "")


def load_video_unet(config: ModelConfig, *, content_dim: Optional[int]):
    """Build the VideoUNet to train from ``config.base`` (see module docstring)."""

    base = Path(config.base)
    if not base.exists():
        raise FileNotFoundError(f"model.base does not exist: {config.base!r}")
    content_dim = config.content_dim if config.content_dim is not None else content_dim
    for folder, subfolder in ((base / "unet", "unet"), (base, None)):
        cfg = folder / "config.json"
        if not cfg.is_file():
            continue
        name = _class_name(cfg)
        if name == "VideoUNet":
            unet = VideoUNet.from_pretrained(str(base), subfolder=subfolder)
            if content_dim is not None and unet.content_dim != content_dim:
                raise ValueError(f"model.base {config.base!r} takes content of size {unet.content_dim}, "
                                 f"the data has {content_dim}")
            check_architecture(config, unet)
            return unet.with_inpainting_input() if config.inpainting_input else unet
        if name == "UNet2DConditionModel":
            unet = VideoUNet.from_image_unet(str(base), subfolder=subfolder, structure_channels=config.structure_channels,
                                             max_frames=config.max_frames, content_dim=content_dim, **config.temporal)
            return unet.with_inpainting_input() if config.inpainting_input else unet
        raise ValueError(f"model.base {config.base!r}: {cfg} describes a {name!r}, expected a "
                         "UNet2DConditionModel or VideoUNet")
    raise FileNotFoundError(f"model.base {config.base!r} holds neither unet/config.json nor config.json")


def check_architecture(config: ModelConfig, unet) -> None:
    """A VideoUNet base brings its own architecture: ``model.max_frames``, ``model.structure_channels`` and
    ``model.temporal`` shape only a model inflated from an image UNet. Refuse one set (away from its default) to
    another value than the base's, which would otherwise be ignored without a word."""
    defaults = ModelConfig()
    wanted = {"max_frames": config.max_frames, "structure_channels": config.structure_channels}
    given = {f"model.{k}": (v, unet.config.get(k)) for k, v in wanted.items() if v != getattr(defaults, k)}
    given.update({f"model.temporal.{k}": (v, unet.config.get(k)) for k, v in (config.temporal or {}).items()})
    differs = [f"{name}={value!r} (the base has {base!r})" for name, (value, base) in given.items() if value != base]
    if differs:
        raise ValueError(f"model.base {config.base!r} is a VideoUNet with its own architecture, which these settings "
                         f"cannot change: {', '.join(differs)}; leave them out, or inflate an image UNet "
                         "(a Stable Diffusion model.base) to choose them")


def data_clip_length(config, dataset) -> int:
    """Frames per video clip of the training data: ``data.synthetic.frames`` or the shards' ``clip_length``."""
    if config.data.source == "synthetic":
        return int(config.data.synthetic.frames)
    return int(dataset.clip_length)


def record_clip_length(unet, clip_length: int) -> None:
    """Record the training clip length in the VideoUNet's config (``clip_length``: the pipeline's default
    temporal window, so inference attends over the frame positions that were trained).

    Raises ``ValueError`` if the clips are longer than the model's ``max_frames`` -- before the first forward.
    """
    if not 1 <= clip_length <= unet.max_frames:
        raise ValueError(f"the data's clip length ({clip_length} frames) exceeds the model's max_frames "
                         f"({unet.max_frames}); set model.max_frames >= {clip_length} or use shorter clips")
    unet.register_to_config(clip_length=int(clip_length))


PREDICTION_TYPES = ("epsilon", "v_prediction")


def load_noise_scheduler(base: str, prediction_type: Optional[str] = None):
    """The training ``DDPMScheduler``: the scheduler config of ``base`` (``base/scheduler`` or
    ``base/../scheduler``), predicting ``prediction_type`` instead of the base's type when given.

    Everything downstream reads the prediction type from this scheduler -- the training targets, the held-out
    loss, the validation sampler and the exported ``scheduler/`` -- so an override reaches all of them.
    """
    from diffusers import DDPMScheduler  # lazy: diffusers is heavy and only this path needs it

    root = Path(base)
    for folder in (root / "scheduler", root.parent / "scheduler"):
        if (folder / "scheduler_config.json").is_file():
            scheduler = DDPMScheduler.from_config(DDPMScheduler.load_config(str(folder)))
            return with_prediction_type(scheduler, prediction_type)
    raise FileNotFoundError(f"model.base {base!r}: no scheduler/scheduler_config.json found beside the UNet")


def with_prediction_type(scheduler, prediction_type: Optional[str] = None):
    """``scheduler``, or (``prediction_type`` given and different) a copy of it that predicts ``prediction_type``;
    raises ``ValueError`` when the result's type is not one training supports."""
    if prediction_type is not None and prediction_type != scheduler.config.prediction_type:
        scheduler = type(scheduler).from_config(scheduler.config, prediction_type=prediction_type)
    if scheduler.config.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"the scheduler's prediction_type {scheduler.config.prediction_type!r} is not supported "
                         f"(set diffusion.prediction_type to one of {PREDICTION_TYPES})")
    return scheduler


CONV_IN = "unet.conv_in."
# Layers inflation added that the image model runs too (image mode uses them): the widened conv_in and the
# content projection. Every other new layer, of whichever kind, is a temporal layer.
IMAGE_PATH_NEW_LAYERS = (CONV_IN, "content_proj.")


def temporal_layer_names(unet) -> set[str]:
    """Names of the parameters of the temporal layers: the new layers less those on the image path."""
    return {n for n in unet.new_layers_state_dict() if not n.startswith(IMAGE_PATH_NEW_LAYERS)}


def select_trainable(unet, trainable: str) -> dict[str, torch.nn.Parameter]:
    """Mark the parameters of one stage trainable (others frozen); return them by name.

    ``temporal``: the temporal layers, and of ``conv_in`` only the NEW input channels (the structure channels
    added to the image UNet). Everything the image model also runs stays put, because stage 2 must leave the
    image model as it was: ``content_proj`` is frozen, ``conv_in``'s bias too, and a gradient hook zeroes the
    gradient of its pretrained latent channels (use :func:`optimizer_groups` so weight decay does not move them
    either). ``all``: everything; ``image``: everything except the temporal layers (stage 1: the image model
    learns CLIP image conditioning; the temporal layers, unused in image mode, stay put).
    """
    temporal = temporal_layer_names(unet)
    named = dict(unet.named_parameters())
    previous = getattr(unet, "_gen1_conv_in_hook", None)
    if previous is not None:  # a model re-selected for another stage
        previous.remove()
        unet._gen1_conv_in_hook = None
    if trainable == "all":
        chosen = set(named)
    elif trainable == "temporal":
        chosen = set(temporal)
        pretrained = _pretrained_in_channels(unet)
        if unet.in_channels > pretrained:  # new structure channels: train those input channels only
            chosen.add(CONV_IN + "weight")
            unet._gen1_conv_in_hook = named[CONV_IN + "weight"].register_hook(
                lambda grad: torch.cat([torch.zeros_like(grad[:, :pretrained]), grad[:, pretrained:]], dim=1))
    elif trainable == "image":
        chosen = set(named) - temporal
    else:
        raise ValueError(f"model.trainable must be one of ('temporal', 'all', 'image'), got {trainable!r}")
    if not chosen:
        raise ValueError(f"model.trainable={trainable!r} selects no parameters of this model")
    for name, param in named.items():
        param.requires_grad_(name in chosen)
    return {n: p for n, p in named.items() if n in chosen}


def _pretrained_in_channels(unet) -> int:
    """Input channels of ``conv_in`` that came from the image UNet (the rest were added, zero-initialised)."""
    return int(dict(unet.config.unet_config).get("in_channels", unet.latent_channels))


def optimizer_groups(params: dict[str, torch.nn.Parameter], trainable: str, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: with ``trainable == "temporal"`` the partly frozen ``conv_in`` weight gets no
    weight decay (decay acts on the whole tensor, so it would shrink the frozen pretrained channels too)."""
    frozen_part = [p for n, p in params.items() if trainable == "temporal" and n == CONV_IN + "weight"]
    rest = [p for n, p in params.items() if not (trainable == "temporal" and n == CONV_IN + "weight")]
    groups = [{"params": rest, "weight_decay": weight_decay}]
    if frozen_part:
        groups.append({"params": frozen_part, "weight_decay": 0.0})
    return groups


def build_unet(config: Config, data):
    """The VideoUNet to train, checked against ``data`` (a :class:`gen1.training.sources.TrainingData`), in train
    mode."""
    unet = load_video_unet(config.model, content_dim=data.content_dim)
    record_clip_length(unet, data_clip_length(config, data.dataset))  # the pipeline's default window
    if unet.content_dim != data.content_dim:
        raise ValueError(f"the model takes content of size {unet.content_dim}, the data has {data.content_dim}")
    if config.model.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet.train()
