"""Still images, and the one reader that takes a video, an image or a folder of images alike.

``read_image`` reads one picture (PIL) as ``uint8 (H, W, 3)``; ``read_depth_image`` reads one depth picture at
full precision (16-bit and float PNG/TIFF) as ``float32 (H, W)``. ``read_frames_or_images`` reads a video, a
single image (one frame) or a directory holding an image sequence (natural sort order) as frames; it is
where gen1 decides by the file suffix (:func:`gen1.media.checks.is_image_path`) whether a file is a still
image or a video.

Every image gen1 reads (source frames, masks, references, depth images) goes through :func:`open_image`: the
file's header is read first and an image of more than ``max_pixels`` pixels (default :data:`MAX_IMAGE_PIXELS`)
is refused before any pixel is decoded, since a few hundred kilobytes of PNG can claim gigabytes of pixels (a
"decompression bomb"). PIL's own bomb check (``DecompressionBombError``) and its limits on compressed text chunks
end in the same one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from gen1.media.checks import (
    IMAGE_SUFFIXES,
    MediaNotFoundError,
    check_positive_int,
    existing_file,
    is_image_path,
    natural_key,
)
from gen1.media.read import read_video, read_video_at
from gen1.media.resize import check_size, resize_frames

MAX_IMAGE_PIXELS = 8192 * 8192  # 67 megapixels: 4x MAX_SIZE squared; 200 MB as RGB, 256 MB as float32 depth


def check_max_pixels(max_pixels) -> int:
    """``max_pixels`` as a positive int (``None``: :data:`MAX_IMAGE_PIXELS`)."""
    return MAX_IMAGE_PIXELS if max_pixels is None else check_positive_int(max_pixels, "max_pixels")


def check_pixel_count(height: int, width: int, path, what: str, max_pixels: int) -> None:
    """``ValueError`` naming ``path`` when an image of ``height x width`` is over ``max_pixels``."""
    if int(height) * int(width) > max_pixels:
        raise ValueError(f"{what} '{path}' is {width}x{height} = {int(height) * int(width):,} pixels, more than the "
                         f"{max_pixels:,} gen1 reads (a decompression bomb, or scale it down first)")


def _too_many_pixels(path, what: str, max_pixels: int) -> ValueError:
    """The error for an image PIL's own decompression-bomb check stopped (its header claims more than twice
    ``PIL.Image.MAX_IMAGE_PIXELS``): worded as :func:`check_pixel_count`'s, naming the limit, not PIL's text."""
    from PIL import Image  # lazy: PIL is heavy and only this path needs it

    pil_limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    if pil_limit is None or max_pixels <= pil_limit:
        return ValueError(f"{what} '{path}' has more than the {max_pixels:,} pixels gen1 reads (a decompression "
                          "bomb, or scale it down first)")
    return ValueError(f"{what} '{path}' has more than {pil_limit:,} pixels, PIL's limit for reading an image "
                      "safely (scale it down first)")


@contextlib.contextmanager
def open_image(path: str | os.PathLike, what: str = "image file", *, max_pixels: int | None = None) -> Iterator:
    """A PIL image of ``path`` with its header read and checked, its pixels not yet decoded (call ``load()``).

    Refuses, each with one ``ValueError`` naming ``what`` and the file: a file PIL cannot identify, an image of
    more than ``max_pixels`` pixels (checked on the header, before decoding), and what PIL's own decompression-bomb
    and text-chunk limits stop (also when raised by ``load()`` inside the block).
    """
    from PIL import Image, UnidentifiedImageError  # lazy: PIL is heavy and only this path needs it

    path = existing_file(path, what)
    max_pixels = check_max_pixels(max_pixels)
    refused = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
    with warnings.catch_warnings():
        # our limit is checked below; PIL's warning (above its own limit) would only repeat it, or contradict a
        # caller's larger max_pixels
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            raise _too_many_pixels(path, what, max_pixels) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"not a readable image file: '{path}' ({err})") from None
        with image:
            check_pixel_count(image.height, image.width, path, what, max_pixels)
            try:
                yield image
            except Image.DecompressionBombError:
                raise _too_many_pixels(path, what, max_pixels) from None
            except refused as err:  # truncated data, a text chunk over PIL's limit, ...
                raise ValueError(f"not a readable image file: '{path}' ({type(err).__name__}: {err})") from None


def read_image(path: str | os.PathLike, *, what: str = "image file", max_pixels: int | None = None,
               mask: bool = False) -> np.ndarray:
    """Read an image as ``uint8 (H, W, 3)`` RGB.

    EXIF orientation is applied; transparent images are composited over white; 16-bit greyscale
    (common for depth renders) is scaled to 8 bits rather than clipped. ``what`` names the file in errors
    (``"mask image"``); an image over ``max_pixels`` pixels is refused before decoding (:func:`open_image`).
    With ``mask``, an image with transparency is read as its alpha (:func:`alpha_mask`).
    """
    from PIL import Image, ImageOps  # lazy: PIL is heavy and only this path needs it

    with open_image(path, what, max_pixels=max_pixels) as image:
        image = ImageOps.exif_transpose(image)
        image.load()
    alpha = alpha_mask(image) if mask else None
    if alpha is not None:
        return np.ascontiguousarray(np.repeat(alpha[..., None], 3, axis=-1))
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


def alpha_mask(image) -> np.ndarray | None:
    """A PIL image's region by its alpha, ``uint8 (H, W)``: 255 where it is not transparent, 0 where it is; ``None``
    when no pixel is fully transparent.

    A mask painted on a transparent layer, or cut out of a frame (the subject opaque, the rest transparent), marks
    its region by its alpha, as the web app's drawing does (every painted pixel, however faint): composited over
    white (:func:`read_image`) it would be white everywhere, or the cut-out inverted. An image with no transparent
    pixel (opaque, or a stray pixel at 254) is read by its grey values."""
    if image.mode not in ("RGBA", "LA", "PA") and not (image.mode == "P" and "transparency" in image.info):
        return None
    alpha = np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., 3]
    return None if int(alpha.min()) > 0 else np.where(alpha > 0, 255, 0).astype(np.uint8)


def read_depth_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """One depth image as ``float32 (H, W)`` at full precision; colour images are averaged.

    The header is checked by :func:`open_image` (size limit, decompression bombs) before anything is decoded.
    OpenCV (``IMREAD_UNCHANGED``) then decodes it, keeping 16-bit grey and colour PNG/TIFF and float TIFF as
    stored, where PIL cuts 16-bit colour to 8 bits; PIL decodes what OpenCV cannot.
    """
    import cv2  # lazy: cv2 is heavy and only this path needs it

    with open_image(path, "depth image", max_pixels=max_pixels) as image:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is not None and arr.shape[0] * arr.shape[1] > image.width * image.height:
            arr = None  # OpenCV read something else than the header PIL checked: trust neither size, decode with PIL
        if arr is None:
            image.load()
            arr = np.array(image)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32).mean(axis=-1)  # channel order does not matter for the mean
    return arr.astype(np.float32)


def read_frames_or_images(
    path: str | os.PathLike,
    *,
    max_frames: int | None = None,
    size: int | None = None,
    stride: int = 1,
    target_fps: float | Fraction | None = None,
    start: float = 0.0,
    duration: float | None = None,
    max_pixels: int | None = None,
    mask: bool = False,
) -> np.ndarray:
    """Frames ``uint8 (F, H, W, 3)`` from a video file, a single image (F = 1), or a directory of images read
    in natural order (``frame2.png`` before ``frame10.png``); all images must share a size.

    ``size`` resizes to that short side (:func:`gen1.media.resize.resize_frames`, the policy of
    :func:`read_video`); ``max_frames`` limits a video or an image sequence. ``stride``, ``target_fps``,
    ``start`` and ``duration`` select frames of a video (see :func:`read_video`) and do not apply to
    images, which have no timing: a mask or depth image stands for every frame of the clip it goes with.
    ``max_pixels`` bounds each image (:func:`open_image`); ``mask`` reads images with transparency as their
    alpha (:func:`read_image`).
    """
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(f"video, image or image directory not found: '{path}'")
    max_frames = None if max_frames is None else check_positive_int(max_frames, "max_frames")
    size = None if size is None else check_size(size)
    if not path.is_dir() and not is_image_path(path):
        clip_args = dict(stride=stride, target_fps=target_fps, start=start, duration=duration)
        clip = read_video(path, max_frames=max_frames, size=size, **clip_args)
        if mask:  # the same frames, a video with transparency read by its alpha (a GIF painted on a clear layer)
            return read_video_at(path, clip.times, size=size, alpha=True)[0]
        return clip.frames
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and is_image_path(p)), key=natural_key)
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in directory '{path}'")
    else:
        files = [path]
    images, first_shape = [], None
    for file in files[:max_frames]:
        image = read_image(file, max_pixels=max_pixels, mask=mask)
        first_shape = first_shape or image.shape
        if image.shape != first_shape:
            raise ValueError(
                f"image '{file}' is {image.shape[1]}x{image.shape[0]} but '{files[0]}' is "
                f"{first_shape[1]}x{first_shape[0]}; an image sequence needs one size"
            )
        images.append(image if size is None else resize_frames(image[None], size)[0])  # one at a time: bounded memory
    return np.stack(images)
