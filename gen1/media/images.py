"""Still images, and the one reader that takes a video, an image or a folder of images alike.

``read_image`` reads one picture (PIL) as ``uint8 (H, W, 3)``. ``read_frames_or_images`` reads a video, a
single image (one frame) or a directory holding an image sequence (natural sort order) as frames; it is
where gen1 decides by the file suffix (:func:`gen1.media.checks.is_image_path`) whether a file is a still
image or a video.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from gen1.media.checks import (
    IMAGE_SUFFIXES,
    MediaNotFoundError,
    check_positive_int,
    existing_file,
    is_image_path,
    natural_key,
)
from gen1.media.read import read_video
from gen1.media.resize import check_size, resize_frames


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``uint8 (H, W, 3)`` RGB.

    EXIF orientation is applied; transparent images are composited over white; 16-bit greyscale
    (common for depth renders) is scaled to 8 bits rather than clipped.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = existing_file(path, "image file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"not a readable image file: '{path}' ({err})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or gray.max() > 255 else 255.0
        gray = np.clip(np.round(gray / peak * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def read_frames_or_images(
    path: str | os.PathLike,
    *,
    max_frames: int | None = None,
    size: int | None = None,
    stride: int = 1,
    target_fps: float | Fraction | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Frames ``uint8 (F, H, W, 3)`` from a video file, a single image (F = 1), or a directory of images read
    in natural order (``frame2.png`` before ``frame10.png``); all images must share a size.

    ``size`` resizes to that short side (:func:`gen1.media.resize.resize_frames`, the policy of
    :func:`read_video`); ``max_frames`` limits a video or an image sequence. ``stride``, ``target_fps``,
    ``start`` and ``duration`` select frames of a video (see :func:`read_video`) and do not apply to
    images, which have no timing: a mask or depth image stands for every frame of the clip it goes with.
    """
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(f"video, image or image directory not found: '{path}'")
    max_frames = None if max_frames is None else check_positive_int(max_frames, "max_frames")
    size = None if size is None else check_size(size)
    if not path.is_dir() and not is_image_path(path):
        clip_args = dict(stride=stride, target_fps=target_fps, start=start, duration=duration)
        return read_video(path, max_frames=max_frames, size=size, **clip_args).frames
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and is_image_path(p)), key=natural_key)
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in directory '{path}'")
    else:
        files = [path]
    images, first_shape = [], None
    for file in files[:max_frames]:
        image = read_image(file)
        first_shape = first_shape or image.shape
        if image.shape != first_shape:
            raise ValueError(
                f"image '{file}' is {image.shape[1]}x{image.shape[0]} but '{files[0]}' is "
                f"{first_shape[1]}x{first_shape[0]}; an image sequence needs one size"
            )
        images.append(image if size is None else resize_frames(image[None], size)[0])  # one at a time: bounded memory
    return np.stack(images)
