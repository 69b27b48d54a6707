"""gen1's one resize policy: scale with the aspect ratio kept until the frame covers the output, then centre-crop.

``size`` is the target *short* side and must be a multiple of 8 (the VAE's downscale factor; a pipeline
with another factor passes its own ``multiple``). :func:`resized_shape` scales so that the short side is
exactly ``size`` (the long side rounded to the nearest pixel), then takes the long side down to a
multiple of 8, so at most 7 pixels are lost. :func:`fit_frames` / :func:`fit_tensor` bring frames to any
output ``(height, width)`` the same way: the smallest aspect-kept scaling that covers it, then a centre
crop. Cropping rather than padding or stretching keeps every output pixel real, undistorted footage,
which is what a diffusion model should see; a video, its mask and its depth that go through the same
function stay aligned.

Interpolation: video frames, uint8 or float, use OpenCV, area averaging to shrink and bicubic to enlarge
(:func:`fit_frames`, :func:`fit_float_frames`); other float tensors (masks, depth) antialiased bilinear
(torch, :func:`fit_tensor`).

``size`` is at most :data:`MAX_SIZE`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gen1.media.checks import check_positive_int
from gen1.media.frames import check_uint8_frames

# The largest short side gen1 resizes to. 4096 is about twice 4K UHD's short side (2160) and 4-8x the
# resolutions Stable-Diffusion-family models are trained at (512-1024). One 4096 x 7280 RGB frame is
# already 90 MB, and the UNet's activations grow with the pixel count, so a larger value is a typo that
# would otherwise fail deep inside OpenCV or run out of memory.
MAX_SIZE = 4096


def check_size(size: Any, name: str = "size", *, multiple: int = 8) -> int:
    """``size`` (a target short side) as int, checked: a positive multiple of ``multiple`` up to :data:`MAX_SIZE`.

    ``name`` is what the error calls it (``size`` in the API, ``--size`` at the command line).
    """
    size = check_positive_int(size, name)
    if size % multiple:
        raise ValueError(f"{name} (target short side) must be a multiple of {multiple}, got {size}")
    if size > MAX_SIZE:
        raise ValueError(f"{name} (target short side) must be at most {MAX_SIZE} pixels, got {size}")
    return size


def resized_shape(height: int, width: int, size: int, *, multiple: int = 8) -> tuple[int, int]:
    """Output ``(height, width)`` for a ``height x width`` input resized to short side ``size`` (module policy)."""
    size = check_size(size, multiple=multiple)
    scale = size / min(height, width)
    out_h = size if height <= width else max(size, round(height * scale))
    out_w = size if width < height else max(size, round(width * scale))
    return out_h - out_h % multiple, out_w - out_w % multiple


def cover_geometry(height: int, width: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """``(scaled_h, scaled_w, top, left)``: the aspect-kept scaling of ``height x width`` that just covers
    ``out_h x out_w``, and where the centred crop of that size starts in it."""
    scale = max(out_h / height, out_w / width)
    scaled_h, scaled_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
    return scaled_h, scaled_w, (scaled_h - out_h) // 2, (scaled_w - out_w) // 2


def fit_points(points, input_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates ``(..., 2)`` (x, y) in frames of ``input_size`` (H, W) as the same points in those frames
    fitted to ``size`` (H, W) by :func:`fit_frames` (the covering scale, then the centred crop), pixel centres kept:
    where a click or a drag given on the source lands in the frames an edit reads. Float64."""
    scaled_h, scaled_w, top, left = cover_geometry(*input_size, *size)
    scale = np.array([scaled_w / input_size[1], scaled_h / input_size[0]])
    return (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5 - np.array([left, top], dtype=np.float64)


def unfit_points(points, input_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The inverse of :func:`fit_points`: coordinates ``(..., 2)`` in frames fitted to ``size`` back in frames of
    ``input_size`` (a click on the frame an edit reads, in pixels of its source). Float64."""
    scaled_h, scaled_w, top, left = cover_geometry(*input_size, *size)
    scale = np.array([scaled_w / input_size[1], scaled_h / input_size[0]])
    return (np.asarray(points, dtype=np.float64) + 0.5 + np.array([left, top], dtype=np.float64)) / scale - 0.5


def _check_output_shape(shape: Any) -> tuple[int, int]:
    out_h, out_w = (int(v) for v in shape)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive (height, width), got {tuple(shape)}")
    return out_h, out_w


def same_shape(size: tuple[int, int], shape: tuple[int, int]) -> bool:
    """Whether ``shape`` (H, W) is ``size`` (H, W) scaled by some factor, within a pixel of that scale (a mask or a
    depth map made on a smaller or larger copy of the frame)."""
    scale = max(size[0] / shape[0], size[1] / shape[1])
    return abs(shape[0] * scale - size[0]) <= scale and abs(shape[1] * scale - size[1]) <= scale


# The smallest short side :func:`edited_frames_shape` considers: at 8 px the long side, cut down to a multiple of 8,
# loses up to half the frame (a 3:2 or 16:9 clip's frames are 8x8 there), so a square mask or depth map for a
# wide clip passed as "its frames at 8 px, enlarged 8x"; nobody edits below 16 px.
MIN_EDITED_SHORT_SIDE = 16


def edited_frames_shape(size: tuple[int, int], shape: tuple[int, int]) -> bool:
    """Whether ``shape`` (H, W) is that of the frames an edit reads from a video of ``size`` (H, W) at some short
    side of at least :data:`MIN_EDITED_SHORT_SIDE` (:func:`gen1.media.resized_shape`), or that shape enlarged by a
    whole factor up to 16."""
    for factor in range(1, 17):
        if shape[0] % factor or shape[1] % factor:
            continue
        short = min(shape) // factor
        if short >= MIN_EDITED_SHORT_SIDE and short % 8 == 0 and short <= MAX_SIZE and resized_shape(*size, short) == (
                shape[0] // factor, shape[1] // factor):
            return True
    return False


def fit_frames(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``uint8 (F, H, W, 3)`` frames scaled (aspect kept) to cover ``shape = (height, width)``, centre-cropped
    to it. Frames already of that shape are returned as they are."""
    return _fit_with_opencv(check_uint8_frames(frames, "frames"), shape)


def fit_float_frames(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``float32 (F, H, W, 3)`` frames in [0, 1] fitted to ``shape`` by the same OpenCV interpolation as
    :func:`fit_frames`, clipped to [0, 1] (bicubic overshoots): a float clip and the 8-bit clip it was made
    from give the same frames but for the 8-bit rounding, so Python and ``gen1 edit`` see one picture."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"float frames must be (F, H, W, 3), got shape {frames.shape}")
    return np.clip(_fit_with_opencv(frames, shape), 0.0, 1.0)


def _fit_with_opencv(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(F, H, W, C)`` frames (uint8 or float32) scaled to cover ``shape``, centre-cropped: OpenCV's area
    averaging to shrink, bicubic to enlarge."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    out_h, out_w = _check_output_shape(shape)
    height, width = frames.shape[1:3]
    scaled_h, scaled_w, top, left = cover_geometry(height, width, out_h, out_w)
    if (scaled_h, scaled_w) != (height, width):
        interpolation = cv2.INTER_AREA if scaled_h < height else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (scaled_w, scaled_h), interpolation=interpolation) for f in frames])
    return np.ascontiguousarray(frames[:, top : top + out_h, left : left + out_w])


def fit_tensor(frames, shape: tuple[int, int]):
    """Float ``(N, C, H, W)`` frames scaled (aspect kept, antialiased bilinear) to cover ``shape = (height,
    width)``, centre-cropped to it; the same geometry as :func:`fit_frames`. A no-op at that shape."""
    import torch.nn.functional as F  # lazy: torch is heavy and only this path needs it

    out_h, out_w = _check_output_shape(shape)
    height, width = frames.shape[-2:]
    scaled_h, scaled_w, top, left = cover_geometry(height, width, out_h, out_w)
    if (scaled_h, scaled_w) != (height, width):
        frames = F.interpolate(frames, size=(scaled_h, scaled_w), mode="bilinear", antialias=True, align_corners=False)
    if (scaled_h, scaled_w) == (out_h, out_w):
        return frames
    return frames[..., top : top + out_h, left : left + out_w].contiguous()


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8 (F, H, W, 3)`` frames so the short side is ``size``; centre-crop the long side down to
    a multiple of 8 (see the module docstring for why crop and not pad)."""
    frames = check_uint8_frames(frames, "frames")
    return fit_frames(frames, resized_shape(frames.shape[1], frames.shape[2], size))
