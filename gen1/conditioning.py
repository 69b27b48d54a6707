"""Turning a source video and user inputs into the tensors the pipeline works on.

Kept apart from :mod:`gen1.pipeline` so that the loop there reads as the algorithm, and so that training code
can build the structure input the same way (:func:`structure_input` is THE mapping from depth to the UNet's
structure channels).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange


def check_structure_level(level: float) -> float:
    """Return ``level`` as float after checking that it lies in [0, 7] (the paper's t_s range)."""
    value = float(level)
    if not (0.0 <= value <= 7.0):
        raise ValueError(f"structure_level must be in [0, 7], got {level!r}")
    return value


def video_to_tensor(video) -> tuple[torch.Tensor, object]:
    """Source video -> (float frames ``(F, 3, H, W)`` in [0, 1] on CPU, fps or None).

    Accepts a path (read with :func:`gen1.video.read_video`), a ``VideoClip``, a uint8 array ``(F, H, W, 3)``,
    a float tensor ``(F, 3, H, W)`` in [0, 1], or a list of PIL images.
    """
    fps = None
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        if not path.is_file():
            raise FileNotFoundError(f"video file not found: '{path}'")
        from gen1.video import read_video

        video = read_video(path)
    if hasattr(video, "frames") and hasattr(video, "fps"):  # VideoClip
        fps = video.fps
        video = video.frames
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("video must have at least 1 frame, got an empty list")
        video = np.stack([np.asarray(image.convert("RGB") if hasattr(image, "convert") else image) for image in video])
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"video array must be uint8 (F, H, W, 3), got shape {video.shape}")
        if video.dtype != np.uint8:
            raise ValueError(f"video array must be uint8 (F, H, W, 3), got dtype {video.dtype}")
        frames = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float() / 255.0
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
    """Output ``(height, width)``: explicit ``height``/``width``, or ``size`` = short side (aspect kept),
    or the input size; always rounded down to a multiple of ``multiple`` (the VAE's downscale factor)."""
    if size is not None and (height is not None or width is not None):
        raise ValueError("give either size or height/width, not both")
    if size is not None:
        if int(size) != size or size < multiple:
            raise ValueError(f"size must be an integer >= {multiple}, got {size!r}")
        scale = size / min(height_in, width_in)
        height, width = round(height_in * scale), round(width_in * scale)
    height = height_in if height is None else height
    width = width_in if width is None else width
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < multiple:
            raise ValueError(f"{name} must be an integer >= {multiple}, got {value!r}")
    return int(height) // multiple * multiple, int(width) // multiple * multiple


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` float frames to ``size`` (antialiased bilinear); a no-op at the same size."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)


def structure_input(depth: torch.Tensor, level: float, latent_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth ``(F, 1, H, W)`` in [0, 1] -> (obscured depth ``(F, 1, H, W)``, UNet structure ``(1, 1, F, h, w)``).

    The depth is obscured at level ``t_s`` (:func:`gen1.depth.obscure`), resized to the latent grid and mapped
    to [-1, 1] (``2 d - 1``, the range Stable Diffusion 2 depth was trained on), so that a depth-pretrained UNet
    is a valid starting point.
    """
    from gen1.depth import obscure

    obscured = obscure(depth.float(), check_structure_level(level)).clamp(0, 1)
    small = resize(obscured, latent_size) * 2.0 - 1.0
    return obscured, rearrange(small, "f c h w -> 1 c f h w")


def same_aspect(size_a: tuple[int, int], size_b: tuple[int, int], tolerance: float = 0.02) -> bool:
    """True if two ``(height, width)`` sizes have aspect ratios within ``tolerance`` (relative)."""
    return math.isclose(size_a[1] / size_a[0], size_b[1] / size_b[0], rel_tol=tolerance)
