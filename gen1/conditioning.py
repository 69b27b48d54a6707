"""Turning a source video and user inputs into the tensors the pipeline works on.

Kept apart from :mod:`gen1.pipeline` so that the loop there reads as the algorithm, and so that training code
can build the structure input the same way (:func:`depth_to_structure` is THE mapping from depth to the UNet's
structure channels).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from gen1.depth import obscure
from gen1.media import (MAX_SIZE, check_uint8_frames, fit_float_frames, fit_frames, fit_tensor, read_video,
                        resized_shape, to_uint8_frames)


def video_to_tensor(video) -> tuple[torch.Tensor, object]:
    """Source video -> (float frames ``(F, 3, H, W)`` in [0, 1] on CPU, fps or None).

    Accepts a path (read with :func:`gen1.media.read_video`), a ``VideoClip``, a uint8 array ``(F, H, W, 3)``,
    a float tensor ``(F, 3, H, W)`` in [0, 1], or a list of PIL images or uint8 arrays ``(H, W, 3)``.
    """
    frames, fps = video_as_given(video)
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    return frames, fps


def video_at_size(video, size_of) -> tuple[torch.Tensor, object, tuple[int, int]]:
    """Source video -> (float frames ``(F, 3, H, W)`` in [0, 1] at ``size_of(input (H, W))``, fps or None, the input
    (H, W)). Video given as 8-bit pixels (a path, a ``VideoClip``, a uint8 array, images) is resized as 8-bit
    pixels, as :func:`gen1.media.read_video` resizes what ``gen1 edit`` reads (:func:`gen1.media.fit_frames`), so
    that the same clip gives the same frames from Python and from the command line; a float tensor by the same
    interpolation in float (:func:`gen1.media.fit_float_frames`: the 8-bit clip it was made from gives the same
    frames but for the 8-bit rounding)."""
    frames, fps = video_as_given(video)
    if isinstance(frames, np.ndarray):
        input_size = tuple(frames.shape[1:3])
        fitted = fit_frames(frames, size_of(input_size))
        return torch.from_numpy(fitted).permute(0, 3, 1, 2).float() / 255.0, fps, input_size
    input_size = tuple(frames.shape[-2:])
    shape = size_of(input_size)
    if tuple(shape) == input_size:
        return frames, fps, input_size
    fitted = fit_float_frames(frames.permute(0, 2, 3, 1).numpy(), shape)
    return torch.from_numpy(fitted).permute(0, 3, 1, 2).contiguous(), fps, input_size


def video_as_given(video) -> tuple[np.ndarray | torch.Tensor, object]:
    """Source video -> (its frames as given: uint8 ``(F, H, W, 3)`` for 8-bit forms, a float tensor
    ``(F, 3, H, W)`` on CPU for a tensor; fps or None), checked (:func:`video_to_tensor` lists the forms)."""
    fps = None
    if isinstance(video, (str, os.PathLike)):
        video = read_video(video)  # a missing file: MediaNotFoundError (a FileNotFoundError) naming it
    if hasattr(video, "frames") and hasattr(video, "fps"):  # VideoClip
        fps = video.fps
        video = video.frames
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("video must have at least 1 frame, got an empty list")
        video = to_uint8_frames(video, "video")
    if isinstance(video, np.ndarray):
        frames = check_uint8_frames(video, "video")
    elif isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[1] != 3 or not video.is_floating_point():
            raise ValueError(
                f"video tensor must be float (F, 3, H, W) in [0, 1], got {video.dtype} shape {tuple(video.shape)}"
            )
        frames = video.detach().float().cpu()
    else:
        raise ValueError(f"video must be a path, array, tensor or list of images, got {type(video).__name__}")
    if frames.shape[0] < 1:
        raise ValueError(f"video must have at least 1 frame, got {frames.shape[0]}")
    return frames, fps


def target_size(
    height_in: int, width_in: int, *, height=None, width=None, size=None, multiple: int = 8
) -> tuple[int, int]:
    """Output ``(height, width)`` for a ``height_in x width_in`` video, by gen1's one resize policy
    (:mod:`gen1.media.resize`): ``size`` = short side (a multiple of ``multiple``: 8, and of the VAE's factor,
    at most ``MAX_SIZE``; the long side rounded down to a multiple), or explicit ``height``/``width``, or the
    input size; explicit and input sizes are rounded down to a multiple of ``multiple``. :func:`resize` then
    scales with the aspect kept and centre-crops to it."""

    if size is not None and (height is not None or width is not None):
        raise ValueError("give either size or height/width, not both")
    if size is not None:
        return resized_shape(height_in, width_in, size, multiple=multiple)
    for name, value in (("height", height), ("width", width)):
        if value is not None and (isinstance(value, bool) or int(value) != value or not multiple <= value <= MAX_SIZE):
            raise ValueError(f"{name} must be an integer in [{multiple}, {MAX_SIZE}], got {value!r}")
    height = height_in if height is None else height
    width = width_in if width is None else width
    if min(height, width) < multiple:
        raise ValueError(f"the video is {width_in}x{height_in}; its sides must be at least {multiple} pixels")
    return int(height) // multiple * multiple, int(width) // multiple * multiple


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float ``(N, C, H, W)`` frames brought to ``size = (height, width)`` by gen1's resize policy: scaled with the
    aspect kept (antialiased bilinear) to cover it, then centre-cropped (:func:`gen1.media.fit_tensor`); a no-op
    at the same size. A video, its mask and its depth resized by this stay aligned."""

    return fit_tensor(frames, size)


def vae_latent_scale(vae) -> tuple[float, float]:
    """``(scaling_factor, shift_factor)`` of a diffusers VAE config (defaults 1 and 0)."""
    scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
    return scaling, shift


@torch.no_grad()
def encode_latents(vae, frames: torch.Tensor, *, chunk_size: int = 8, device=None,
                   sample_generator: torch.Generator | None = None) -> torch.Tensor:
    """THE latent convention, shared by preprocessing, synthetic training data, validation and the pipeline.

    Float frames ``(N, 3, H, W)`` in [0, 1] -> ``z_0 = (posterior mean - shift_factor) * scaling_factor``,
    ``(N, C, h, w)`` float32 on ``device`` (default: the VAE's), encoding ``chunk_size`` frames per call.
    With ``sample_generator`` a posterior *sample* drawn with it replaces the mean: the convention of diffusers'
    image-to-image and video-to-video pipelines, which the public-checkpoint route follows so that a seed
    means the same as there.
    """
    scaling, shift = vae_latent_scale(vae)
    param = next(vae.parameters())
    device = param.device if device is None else device
    chunks = []
    for chunk in frames.split(chunk_size):
        posterior = vae.encode((chunk * 2.0 - 1.0).to(device=device, dtype=param.dtype)).latent_dist
        value = posterior.mean if sample_generator is None else posterior.sample(sample_generator)
        chunks.append((value.float() - shift) * scaling)
    return torch.cat(chunks)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, *, chunk_size: int = 8, device=None) -> torch.Tensor:
    """Inverse of :func:`encode_latents`: ``(N, C, h, w)`` -> float frames ``(N, 3, H, W)`` in [0, 1] on the CPU."""
    scaling, shift = vae_latent_scale(vae)
    param = next(vae.parameters())
    device = param.device if device is None else device
    frames = []
    for chunk in latents.split(chunk_size):
        pixels = vae.decode((chunk.float() / scaling + shift).to(device=device, dtype=param.dtype)).sample
        frames.append((pixels.float() / 2.0 + 0.5).clamp(0, 1).cpu())
    return torch.cat(frames)


def depth_to_latent_grid(depth: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """Depth ``(N, 1, H, W)`` -> ``(N, 1, h, w)`` at latent resolution by area averaging.

    Preprocessing caches depth this way and inference resizes it the same way, so the structure levels below
    act on identical grids in training and at inference.
    """
    if tuple(depth.shape[-2:]) == tuple(latent_size):
        return depth
    return F.interpolate(depth.float(), size=tuple(latent_size), mode="area").to(depth.dtype)


def depth_to_structure(depth: torch.Tensor, levels) -> torch.Tensor:
    """THE mapping from depth to the UNet's structure input, shared by training and inference.

    ``depth``: ``(B, 1, F, h, w)`` inverse depth in [0, 1] at latent resolution. ``levels``: t_s, one number or
    one per sample (length B). The depth is obscured at t_s on the latent grid (:func:`gen1.depth.obscure`: the
    levels are spread evenly in log resolution from the full grid at 0 to a layout of about 4 cells along the
    short side at 7, so a level means the same at any video size and no two levels coincide) and mapped to
    [-1, 1] (``2 d - 1``,
    the range Stable Diffusion 2 depth was trained on, so that a depth-pretrained UNet is a valid starting
    point).
    """

    frames_first = rearrange(depth, "b c f h w -> b f c h w")
    if not isinstance(levels, (int, float)):  # obscure checks each level's range
        levels = [float(v) for v in (levels.tolist() if torch.is_tensor(levels) else levels)]
    obscured = obscure(frames_first, levels).clamp(0, 1)
    return rearrange(obscured, "b f c h w -> b c f h w") * 2.0 - 1.0


def video_structure(depth: torch.Tensor, level: float, latent_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth of one video ``(F, 1, H, W)`` in [0, 1] -> (what the model sees, for display ``(F, 1, H, W)`` in
    [0, 1], UNet structure ``(1, 1, F, h, w)`` from :func:`depth_to_structure`)."""
    small = depth_to_latent_grid(depth.float(), latent_size)
    structure = depth_to_structure(rearrange(small, "f c h w -> 1 c f h w"), level)
    seen = rearrange((structure + 1.0) / 2.0, "1 c f h w -> f c h w")
    return resize(seen, tuple(depth.shape[-2:])).clamp(0, 1), structure


def inpainting_input(latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """THE inpainting channels of a model that takes them (``VideoUNet(inpainting_input=True)``), shared by training
    and inference: ``[known, latents * known]``, ``(B, 1 + C, F, h, w)``, for clean ``latents`` ``(B, C, F, h, w)``
    and the region drawn ``mask`` ``(B, 1, F, h, w)`` (1 inside), ``known = 1 - mask``. Nothing known is all zeros
    (:func:`nothing_known`), so the channels, added at zero weight, leave an edit without a mask as the model
    without them made it. The latents are masked on the latent grid, after encoding: the VAE's receptive field
    carries some of what the region held into the cells around it (training's cached latents hold the region's
    content there; an edit encodes what it keeps, where an erase's region is pre-filled, not the subject)."""
    known = 1 - mask.to(latents.dtype)
    return torch.cat([known, latents * known], dim=1)


def nothing_known(latents: torch.Tensor) -> torch.Tensor:
    """:func:`inpainting_input` of an edit without a mask, where everything is drawn: zeros ``(B, 1 + C, F, h, w)``."""
    shape = list(latents.shape)
    return latents.new_zeros([shape[0], 1 + shape[1], *shape[2:]])


def region_on_latent_grid(region: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """A pixel region ``(F, 1, H, W)`` (> 0.5 inside) as the mask of :func:`inpainting_input` ``(F, 1, h, w)``: a
    latent cell is drawn when any of its pixels is inside, so the known latents hold nothing of the region."""
    inside = (region > 0.5).float()
    if tuple(inside.shape[-2:]) == tuple(latent_size):
        return inside
    return F.adaptive_max_pool2d(inside, tuple(latent_size))
