"""User-supplied structure: depth rendered from a 3D mock-up (or any depth video / image sequence).

The depth flows through the same per-clip normalisation as estimated depth, so the model sees the
same convention: inverse depth in [0, 1], 1 = near.

Conventions of the inputs (``invert``):

* ``invert=False`` (default): the values are already *inverse depth / disparity*, brighter = nearer.
  This is what MiDaS-style depth videos, ControlNet depth maps and most "depth map" PNG exports hold.
* ``invert=True``: the values are *distance* (far = large), e.g. Blender's raw Z / "Depth" pass
  (metric distance from the camera, written to 16-bit PNG or ``.npy``; convert EXR to one of these), or a normalised Z pass
  that was not inverted in the compositor. They are converted with ``1 / d`` (not ``1 - d``), which
  is what a monocular network's inverse depth corresponds to; values <= 0 or non-finite count as
  infinitely far (0). Blender's background (Z = 1e10) therefore becomes 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gen1.depth.normalize import normalize_clip_depth
from gen1.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key, read_video
from gen1.media.resize import same_shape
from gen1.media.arrays import read_npy
from gen1.media.images import read_depth_image


def _read_npy(path: Path, max_pixels: int | None) -> np.ndarray:
    """A ``.npy`` depth array as float32, read safely (:func:`gen1.media.arrays.read_npy`)."""
    return read_npy(path, "depth array", max_pixels).astype(np.float32)


def _load_array(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """(F, H, W) float32 from a video, an image, a .npy file or a folder of images (each frame at most
    ``max_pixels``, checked before decoding)."""
    if path.is_dir():
        # natural order (frame2 before frame10), as gen1.media reads the matching image sequence
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + (".npy",)),
                       key=natural_key)
        if not files:
            raise ValueError(f"structure folder '{path}' holds no depth images ({', '.join(IMAGE_SUFFIXES)}, .npy)")
        maps = [_read_npy(p, max_pixels) if p.suffix.lower() == ".npy" else read_depth_image(p, max_pixels=max_pixels)
                for p in files]
        shapes = {m.shape for m in maps}
        if len(shapes) != 1:
            raise ValueError(f"depth images in '{path}' differ in size: {sorted(shapes)}")
        return np.stack(maps)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _read_npy(path, max_pixels)
        return arr[None] if arr.ndim == 2 else arr
    if suffix in VIDEO_SUFFIXES:
        return read_video(path).frames.astype(np.float32).mean(axis=-1)
    if suffix in IMAGE_SUFFIXES:
        return read_depth_image(path, max_pixels=max_pixels)[None]
    raise ValueError(f"structure file '{path}' has an unsupported type '{suffix}' "
                     f"(videos {VIDEO_SUFFIXES}, images {IMAGE_SUFFIXES}, .npy, or a folder of images)")


def _as_tensor(data) -> torch.Tensor:
    """numpy/tensor (F, H, W), (F, 1, H, W), (F, H, W, 1|3) or (H, W) -> float32 (F, 1, H, W)."""
    t = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data).float()
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    elif t.ndim == 4 and t.shape[1] == 1:
        pass
    elif t.ndim == 4 and t.shape[-1] in (1, 3):
        t = t.mean(dim=-1)[:, None]
    else:
        raise ValueError(f"structure must be (F, 1, H, W), (F, H, W), (F, H, W, 1|3) or (H, W), got {tuple(t.shape)}")
    return t


def check_depth_shape(shape: Sequence[int], video_size: Sequence[int],
                      frames_size: Sequence[int] | None = None) -> None:
    """Refuse a depth map of ``shape`` (H, W) that cannot line up with the frames of a video of ``video_size``:
    it must have the video's shape at some size, or that of the frames the edit reads (``frames_size``, the video
    fitted to the edit's size), within a pixel (:func:`gen1.media.resize.same_shape`). Fitting a depth of another
    aspect ratio crops it, so the structure would sit off the frames it is meant for."""
    (height, width), (video_height, video_width) = shape, video_size
    if same_shape(tuple(video_size), tuple(shape)) or (frames_size is not None
                                                       and same_shape(tuple(frames_size), tuple(shape))):
        return
    raise ValueError(f"the depth is {width}x{height} (WxH) but the video is {video_width}x{video_height}: a depth "
                     "map has the video's shape (at any size)")


def load_structure(
    path_or_frames,
    size: int | Sequence[int] | None = None,
    *,
    crop: bool = False,
    invert: bool = False,
    low: float = 2.0,
    high: float = 98.0,
    max_pixels: int | None = None,
    video_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """User-supplied depth -> normalised inverse depth float32 (F, 1, H, W) in [0, 1], 1 = near.

    ``path_or_frames``: a depth video, a depth image, a ``.npy`` array, a folder of depth images
    (8- or 16-bit PNG etc., sorted by name) or an array/tensor. ``size``: None keeps the size; an
    int resizes the short side to it (aspect kept); ``(H, W)`` resizes exactly (bilinear, antialiased), or
    with ``crop=True`` keeps the aspect, covering ``(H, W)`` and centre-cropping the rest (as videos are fitted).
    ``invert``: see the module docstring (True for distance, e.g. a Blender Z pass). ``max_pixels``: the largest
    depth image or ``.npy`` frame read (default :data:`gen1.media.images.MAX_IMAGE_PIXELS`), checked on the file's
    header before anything is decoded or allocated; over it, a ``ValueError`` naming the file. ``video_size``: the
    (H, W) of the video the depth belongs to; a depth of another aspect ratio than the video's or than ``size``'s (the
    frames the edit reads, with ``crop``) is refused (:func:`check_depth_shape`).
    """
    if isinstance(path_or_frames, (str, os.PathLike)):
        path = Path(path_or_frames)
        if not path.exists():
            raise FileNotFoundError(f"structure path does not exist: '{path}'")
        depth = _as_tensor(_load_array(path, max_pixels))
    else:
        depth = _as_tensor(path_or_frames)
    if video_size is not None:
        frames_size = tuple(size) if crop and isinstance(size, (tuple, list)) else None
        check_depth_shape(tuple(depth.shape[-2:]), video_size, frames_size)
    if invert:
        valid = torch.isfinite(depth) & (depth > 0)
        depth = torch.where(valid, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    if size is not None:
        h, w = depth.shape[-2:]
        if isinstance(size, int):
            if size < 1:
                raise ValueError(f"size must be positive, got {size}")
            scale = size / min(h, w)
            target = (max(1, round(h * scale)), max(1, round(w * scale)))
        elif len(size) == 2:
            target = (int(size[0]), int(size[1]))
        else:
            raise ValueError(f"size must be None, an int (short side) or (H, W), got {size!r}")
        out = target
        if crop:
            scale = max(target[0] / h, target[1] / w)
            target = (max(out[0], round(h * scale)), max(out[1], round(w * scale)))
        if target != (h, w):
            depth = F.interpolate(depth, size=target, mode="bilinear", align_corners=False, antialias=True)
        top, left = (target[0] - out[0]) // 2, (target[1] - out[1]) // 2
        depth = depth[..., top : top + out[0], left : left + out[1]]
    return normalize_clip_depth(depth, low=low, high=high)
