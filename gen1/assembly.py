"""Assembling a :class:`~gen1.pipeline.Gen1Pipeline` from checkpoints people hold, rather than a saved pipeline.

* :func:`from_stable_diffusion`: a Stable Diffusion folder in diffusers layout (``unet/``, ``vae/``,
  ``scheduler/``) inflated into a :class:`~gen1.unet.VideoUNet`, plus trained gen1 layers, a depth estimator and
  a content encoder given as instances or paths.
* :func:`trained_video_unet`: a trained VideoUNet given as an instance, its folder, or a training export.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from gen1.content import load_content_encoder
from gen1.depth import load_depth_estimator
from gen1.model_folders import EXPORT_RECORD
from gen1.unet import VideoUNet
from gen1.weights import check_no_missing_weights, missing_weight_reports_held


def trained_video_unet(unet):
    """``unet`` as a VideoUNet: an instance, a VideoUNet folder, or a training export holding ``unet/``."""

    if isinstance(unet, VideoUNet):
        return unet
    if not isinstance(unet, (str, os.PathLike)):
        raise ValueError(f"unet must be a VideoUNet or a folder, got {type(unet).__name__}")
    folder = Path(unet)
    if not (folder / "config.json").is_file() and (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"unet: no VideoUNet config.json in '{unet}' or '{Path(unet) / 'unet'}'")
    name = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    if name != "VideoUNet":
        raise ValueError(f"unet: '{folder}' holds a {name!r}, expected a trained VideoUNet (e.g. OUTPUT/export/unet)")
    return VideoUNet.from_pretrained(str(folder))


def _warn_if_more_than_temporal_trained(temporal_weights) -> None:
    """Warn when ``temporal_weights`` come from a training export that also trained non-temporal weights."""

    record = Path(temporal_weights).parent / EXPORT_RECORD
    if not record.is_file():
        return
    trainable = json.loads(record.read_text(encoding="utf-8")).get("trainable")
    if trainable not in (None, "temporal"):
        warnings.warn(
            f"temporal_weights '{temporal_weights}' come from a run that trained trainable={trainable!r}; "
            f"its other trained weights are only in '{Path(temporal_weights).parent / 'unet'}' and are dropped "
            "here -- pass unet= that folder to keep them",
            UserWarning,
            stacklevel=3,
        )


def _load_depth_and_content(depth_estimator, content_encoder):
    if isinstance(depth_estimator, (str, os.PathLike)):

        depth_estimator = load_depth_estimator(depth_estimator)
    if isinstance(content_encoder, (str, os.PathLike)):

        content_encoder = load_content_encoder(content_encoder)
    return depth_estimator, content_encoder


def _video_unet_for(sd_dir: Path, unet, content_dim: int, *, structure_channels, max_frames, clip_length,
                    temporal_kwargs):
    """The inflated ``sd_dir/unet``, or the trained ``unet`` given (whose config is then fixed)."""

    if unet is None:
        return VideoUNet.from_image_unet(str(sd_dir), subfolder="unet", structure_channels=structure_channels,
                                         max_frames=max_frames, clip_length=clip_length, content_dim=content_dim,
                                         **temporal_kwargs)
    if temporal_kwargs or clip_length is not None:
        given = sorted(temporal_kwargs) + (["clip_length"] if clip_length is not None else [])
        raise ValueError(f"unet= is a trained VideoUNet whose config is fixed; do not also pass {given}")
    unet = trained_video_unet(unet)
    if unet.content_dim != content_dim:
        raise ValueError(f"unet takes content of size {unet.content_dim}, the content_encoder gives {content_dim}")
    return unet


@missing_weight_reports_held()  # the check at the end names a missing key: diffusers' report dropped
def from_stable_diffusion(pipeline_class, sd_dir, *, depth_estimator, content_encoder, temporal_weights=None,
                          unet=None, structure_channels: int = 1, max_frames: int = 32, clip_length=None,
                          scheduler=None, prior=None, prior_scheduler=None,
                          torch_dtype: torch.dtype | None = None, **temporal_kwargs):
    """See :meth:`gen1.pipeline.Gen1Pipeline.from_stable_diffusion`."""
    from diffusers import AutoencoderKL, DDIMScheduler  # lazy: diffusers is heavy and only this path needs it

    sd_dir = Path(sd_dir)
    for sub in ("unet", "vae", "scheduler"):
        if not (sd_dir / sub).is_dir():
            raise FileNotFoundError(f"not a Stable Diffusion directory in diffusers layout: '{sd_dir}' has no '{sub}/' folder")
    depth_estimator, content_encoder = _load_depth_and_content(depth_estimator, content_encoder)
    vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae")
    unet = _video_unet_for(sd_dir, unet, content_encoder.embedding_dim, structure_channels=structure_channels,
                           max_frames=max_frames, clip_length=clip_length, temporal_kwargs=temporal_kwargs)
    if temporal_weights is not None:
        _warn_if_more_than_temporal_trained(temporal_weights)
        unet.load_new_layers(temporal_weights)
    if scheduler is None:
        scheduler = DDIMScheduler.from_pretrained(sd_dir, subfolder="scheduler")
    pipe = pipeline_class(vae=vae, unet=unet, scheduler=scheduler, depth_estimator=depth_estimator,
                          content_encoder=content_encoder, prior=prior, prior_scheduler=prior_scheduler)
    check_no_missing_weights(pipe.components, f"'{sd_dir}'")
    return pipe if torch_dtype is None else pipe.cast(torch_dtype)
