"""Video and image I/O for gen1: read clips as uint8 frames, write H.264 mp4 with the source's audio.

Reading
    ``read_video`` decodes mp4 / mov / webm / gif / mkv ... into ``uint8 (F, H, W, 3)`` RGB frames.
    decord is used when it is installed and opens the file (fast random access to just the frames
    asked for); otherwise, or when decord fails or misreports the file (GIFs, broken metadata, a
    frame count that disagrees with the container), PyAV decodes it sequentially. decord's ffmpeg
    chatter on stderr is silenced so a fallback is quiet. The container is always probed with PyAV,
    which gives the *exact* source frame rate as a ``Fraction`` (``30000/1001``, not ``29.97``) and
    whether the file has audio.

    Frame selection works on presentation timestamps (seconds from the start of the video stream),
    so it is right for variable-frame-rate files too:

    * ``start`` / ``duration``: the window is the frames with ``start <= t < start + duration``;
    * ``stride``: every ``stride``-th frame of the window (``fps = source_fps / stride``);
    * ``target_fps``: for each tick ``t0 + k / target_fps`` the first frame at or after the tick
      (never a frame twice; ``target_fps`` above the source rate is an error: we do not invent frames);
    * ``max_frames``: at most this many frames, from the start of the selection.

Resizing policy (``size``)
    ``size`` is the target *short* side and must be a multiple of 8. Frames are scaled, aspect kept,
    so that the short side is exactly ``size`` (the long side is rounded to the nearest pixel), then the
    long side is centre-cropped down to a multiple of 8 (at most 7 pixels lost). Cropping rather than
    padding keeps every output pixel real footage, which is what a diffusion model should see; the
    aspect ratio changes by less than one 8-pixel step. Downscaling uses area averaging, upscaling
    bicubic interpolation (OpenCV).

Writing
    ``write_video`` encodes H.264 (libx264, ``yuv420p``, CRF quality) into mp4/mov at the exact frame
    rate given (a ``Fraction`` time base, one tick per frame). ``yuv420p`` needs even dimensions: an odd
    height or width is padded by one row/column that repeats the edge pixels (no content is lost; the
    file is at most one pixel larger than the frames). Audio is taken from ``audio_from`` (a path or a
    ``VideoClip``), starting at ``audio_start`` and trimmed to the video's duration: AAC packets are
    copied as they are (no quality loss; the cut falls on an AAC frame boundary, within ~23 ms), other
    codecs are re-encoded to AAC. The file is written through ``gen1.atomic.atomic_path``: a crash
    never leaves a half-written file under the requested name.

    Callers that edit a clip and want to keep its sound pass the clip itself::

        clip = read_video("in.mp4", max_frames=16, size=512)
        write_video("out.mp4", edited, clip.fps, audio_from=clip)   # no-op for clips without audio

Images
    ``read_image`` reads one picture (PIL) as ``uint8 (H, W, 3)``; ``read_frames_or_images`` reads a
    video, a single image or a directory holding an image sequence (natural sort order) as frames.

Every user error is a ``ValueError`` naming the argument or path and its value; a missing path raises
``MediaNotFoundError``, which is both a ``FileNotFoundError`` and a ``ValueError``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "MediaNotFoundError",
    "VideoClip",
    "read_video",
    "write_video",
    "read_image",
    "read_frames_or_images",
    "resize_frames",
    "resized_shape",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # read_image / PIL read and write these
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif")  # inputs read_video is meant for
_OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
OUTPUT_VIDEO_SUFFIXES = tuple(_OUTPUT_FORMATS)  # what write_video writes
_COPYABLE_AUDIO = {"aac"}
# AAC needs a layout with a channel order; sources (raw PCM) may only give a channel count
_STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}  # plays everywhere inside mp4; anything else is re-encoded to AAC
_TIME_EPS = 1e-4  # seconds; frame timestamps from decord are float32
_DECORD_CHUNK = 16  # frames decoded (and resized) at a time on the decord path


class MediaNotFoundError(FileNotFoundError, ValueError):
    """A video or image path that does not exist (catchable as FileNotFoundError or ValueError)."""


@dataclass
class VideoClip:
    """Frames read from a video, with the timing needed to write an edit back in sync.

    Attributes:
        frames: ``uint8 (F, H, W, 3)`` RGB.
        fps: frame rate of ``frames`` (after ``stride`` / ``target_fps``), exact when possible.
        source_fps: the source video's average frame rate (``average_rate`` of the stream).
        path: the file read.
        has_audio: whether the source has an audio stream (``write_video(..., audio_from=clip)``).
        times: ``float64 (F,)`` presentation time of each frame in seconds from the stream start.
    """

    frames: np.ndarray
    fps: Fraction
    source_fps: Fraction
    path: Path
    has_audio: bool
    times: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def start(self) -> float:
        """Time of the first frame in the source, in seconds (where its audio should start)."""
        return float(self.times[0]) if len(self.times) else 0.0

    @property
    def duration(self) -> float:
        """Duration of ``frames`` played at ``fps``, in seconds."""
        return self.num_frames / float(self.fps)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _as_fraction(value: Any, name: str) -> Fraction:
    """A positive, finite frame rate as an exact Fraction (floats like 29.97002997 -> 30000/1001)."""
    if isinstance(value, (bool, str)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(value, (int, np.integer, Fraction)):
        result = Fraction(value)
    else:
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a positive number, got {value!r}") from None
        if not math.isfinite(as_float):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        result = Fraction(as_float).limit_denominator(1_000_000)
    if result <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return result


def _check_seconds(value: Any, name: str, *, allow_zero: bool) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return seconds


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_size(size: Any) -> int:
    size = _check_positive_int(size, "size")
    if size % 8:
        raise ValueError(f"size (target short side) must be a multiple of 8, got {size}")
    return size


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(f"{what} not found: '{path}'")
    if path.is_dir():
        raise ValueError(f"expected a {what}, got a directory: '{path}'")
    return path


# --------------------------------------------------------------------------------------------
# resizing
# --------------------------------------------------------------------------------------------


def _scaled_shape(height: int, width: int, size: int) -> tuple[int, int]:
    scale = size / min(height, width)
    scaled_h = size if height <= width else max(size, round(height * scale))
    scaled_w = size if width < height else max(size, round(width * scale))
    return scaled_h, scaled_w


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Output ``(height, width)`` of ``resize_frames`` for a ``height x width`` input (module policy)."""
    size = _check_size(size)
    scaled_h, scaled_w = _scaled_shape(height, width, size)
    return scaled_h - scaled_h % 8, scaled_w - scaled_w % 8


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8 (F, H, W, 3)`` frames so the short side is ``size``; centre-crop the long side
    down to a multiple of 8 (see the module docstring for why crop and not pad)."""
    import cv2

    frames = _check_uint8_frames(frames, "frames")
    size = _check_size(size)
    height, width = frames.shape[1:3]
    scaled_h, scaled_w = _scaled_shape(height, width, size)
    out_h, out_w = resized_shape(height, width, size)
    if (scaled_h, scaled_w) != (height, width):
        interpolation = cv2.INTER_AREA if scaled_h < height else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (scaled_w, scaled_h), interpolation=interpolation) for f in frames])
    top, left = (scaled_h - out_h) // 2, (scaled_w - out_w) // 2
    return np.ascontiguousarray(frames[:, top : top + out_h, left : left + out_w])


def _maybe_resize(frames: np.ndarray, size: int | None) -> np.ndarray:
    return frames if size is None else resize_frames(frames, size)


def _check_uint8_frames(frames: Any, name: str) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        desc = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
        raise ValueError(f"{name} must be a uint8 numpy array of shape (F, H, W, 3), got {desc}")
    return frames


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


@dataclass
class _Probe:
    """What PyAV's demuxer says about a file, before any frame is decoded."""

    fps: Fraction
    has_audio: bool
    num_frames: int  # 0 when the container does not say
    duration: float | None  # seconds, None when unknown
    format_name: str


def _probe(path: Path) -> _Probe:
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f"not a readable video file: '{path}' ({err})") from None
    with container:
        format_name = container.format.name
        if format_name == "image2" or format_name.endswith("_pipe"):
            raise ValueError(f"'{path}' is a still image, not a video; use read_image() for images")
        if not container.streams.video:
            raise ValueError(f"no video stream in '{path}' (streams: {[s.type for s in container.streams]})")
        stream = container.streams.video[0]
        duration = _stream_seconds(stream, container)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps and stream.frames and duration:
            fps = Fraction(stream.frames) / Fraction(duration).limit_denominator(1_000_000)
        if not fps or fps <= 0:
            raise ValueError(f"cannot determine the frame rate of '{path}'")
        return _Probe(
            fps=Fraction(fps),
            has_audio=bool(container.streams.audio),
            num_frames=int(stream.frames or 0),
            duration=duration,
            format_name=format_name,
        )


class _FrameSelector:
    """Decides, frame by frame in presentation order, which frames a read keeps (see module doc)."""

    def __init__(
        self,
        start: float,
        duration: float | None,
        stride: int,
        target_fps: Fraction | None,
        max_frames: int | None,
    ):
        self.start = start
        self.end = math.inf if duration is None else start + duration
        self.stride = stride
        self.tick = None if target_fps is None else 1.0 / float(target_fps)
        self.max_frames = max_frames
        self.seen_in_window = 0
        self.selected = 0
        self.first_time: float | None = None
        self.next_tick = 0
        self.done = False  # no later frame can be selected
        self.last_time: float | None = None  # last frame time offered (for error messages)

    def offer(self, t: float) -> bool:
        self.last_time = t
        if self.done or t < self.start - _TIME_EPS:
            return False
        if t >= self.end - _TIME_EPS:
            self.done = True
            return False
        index = self.seen_in_window
        self.seen_in_window += 1
        if self.first_time is None:
            self.first_time = t
        if self.tick is not None:
            keep = t >= self.first_time + self.next_tick * self.tick - _TIME_EPS
            while self.first_time + self.next_tick * self.tick <= t + _TIME_EPS:
                self.next_tick += 1
        else:
            keep = index % self.stride == 0
        if keep:
            self.selected += 1
            if self.max_frames is not None and self.selected >= self.max_frames:
                self.done = True
        return keep


def _range_error(path: Path, selector: _FrameSelector) -> ValueError:
    """The error for a read that selected no frame although the video has some."""
    if selector.last_time is not None and selector.last_time < selector.start - _TIME_EPS:
        return ValueError(
            f"start={selector.start:g} s is beyond the end of '{path}' (last frame at {selector.last_time:.3f} s)"
        )
    return ValueError(
        f"no frame of '{path}' lies in the requested range start={selector.start:g} s, "
        f"duration={selector.end - selector.start:g} s"
    )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to stderr (decord's ffmpeg logs) for the duration of the block.

    decord logs through its own ffmpeg build straight to file descriptor 2, so ``sys.stderr``
    redirection cannot catch it. While the block runs, other threads' stderr output is dropped too;
    decord calls are short, and a failed open is followed by PyAV, which reports the real error.
    """
    import sys

    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _to_numpy(batch: Any) -> np.ndarray:
    """decord returns NDArray, or a torch tensor when another module set decord's bridge."""
    if hasattr(batch, "asnumpy"):
        return batch.asnumpy()
    if hasattr(batch, "numpy"):
        return batch.cpu().numpy()
    return np.asarray(batch)


def _read_with_decord(path: Path, probe: _Probe, selector: _FrameSelector, size: int | None):
    """Frames and times via decord, or None when decord is missing, fails, or disagrees with PyAV."""
    try:
        import decord
    except ImportError:
        return None
    if probe.format_name == "gif":  # decord cannot measure GIF durations
        return None
    try:
        with _quiet_stderr():
            reader = decord.VideoReader(str(path))
            count = len(reader)
            if count == 0 or (probe.num_frames and count != probe.num_frames):
                return None
            times = np.asarray(_to_numpy(reader.get_frame_timestamp(list(range(count))))[:, 0], dtype=np.float64)
            if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
                return None
            indices = [i for i, t in enumerate(times) if selector.offer(float(t))]
            if not indices:
                return [], times[:0], selector
            chunks = []
            for begin in range(0, len(indices), _DECORD_CHUNK):
                batch = _to_numpy(reader.get_batch(indices[begin : begin + _DECORD_CHUNK]))
                chunks.append(_maybe_resize(np.ascontiguousarray(batch, dtype=np.uint8), size))
            return chunks, times[indices], selector
    except Exception:  # decord raises its own error types (and RuntimeError); PyAV gives the real message
        return None


def _read_with_pyav(path: Path, probe: _Probe, selector: _FrameSelector, size: int | None):
    import av

    frames: list[np.ndarray] = []
    times: list[float] = []
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # no frame threading: it would hide decoding errors of corrupt packets behind grey frames
        tb = stream.time_base
        origin = stream.start_time or 0
        if selector.start > 0 and tb is not None:
            with contextlib.suppress(av.FFmpegError):
                container.seek(origin + int(selector.start / tb), stream=stream, backward=True)
        last_t = None
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    decoded += 1
                    if frame.pts is not None and tb is not None:
                        t = float((frame.pts - origin) * tb)
                    else:
                        t = 0.0 if last_t is None else last_t + 1.0 / float(probe.fps)
                    last_t = t
                    if selector.offer(t):
                        rgb = frame.to_ndarray(format="rgb24")
                        frames.append(_maybe_resize(rgb[None], size))
                        times.append(t)
                    if selector.done:
                        break
                if selector.done:
                    break
        except av.FFmpegError as err:
            if decoded == 0:
                raise ValueError(f"video '{path}' has no decodable frames ({err})") from None
            raise ValueError(
                f"video '{path}' is corrupt or truncated: decoding failed after {decoded} frames ({err})"
            ) from None
    if decoded == 0 and selector.start <= 0:
        raise ValueError(f"video '{path}' has no decodable frames")
    # A file cut short still demuxes: it just ends early. Read from the start to the end, we must
    # have met (almost) all frames the container lists; 2 frames of slack for edit lists that drop
    # leading frames.
    if not selector.done and selector.start <= 0 and probe.num_frames and decoded + 2 < probe.num_frames:
        raise ValueError(
            f"video '{path}' is truncated: the container lists {probe.num_frames} frames, "
            f"only {decoded} could be decoded"
        )
    return frames, np.asarray(times, dtype=np.float64), selector


def read_video(
    path: str | os.PathLike,
    *,
    stride: int = 1,
    target_fps: float | Fraction | None = None,
    max_frames: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
    size: int | None = None,
) -> VideoClip:
    """Read a video file as ``uint8 (F, H, W, 3)`` RGB frames.

    Args:
        path: mp4 / mov / webm / gif / mkv / ... file.
        stride: keep every ``stride``-th frame (exclusive with ``target_fps``).
        target_fps: resample to this rate by picking, for each tick, the first frame at or after it;
            must not exceed the source rate.
        max_frames: keep at most this many frames.
        start: time of the first frame to read, in seconds (the first frame at or after it).
        duration: read frames with ``start <= t < start + duration`` only.
        size: target short side (a multiple of 8); the long side is centre-cropped to a multiple of 8.

    Returns:
        ``VideoClip`` with ``frames``, ``fps`` (after stride / target_fps), ``source_fps``, ``path``,
        ``has_audio`` and per-frame ``times``.

    Raises:
        MediaNotFoundError: ``path`` does not exist.
        ValueError: not a video, no decodable frames, corrupt/truncated data, ``start`` beyond the
            end, or a bad argument value.
    """
    path = _existing_file(path, "video file")
    stride = _check_positive_int(stride, "stride")
    max_frames = None if max_frames is None else _check_positive_int(max_frames, "max_frames")
    start = _check_seconds(start, "start", allow_zero=True)
    duration = None if duration is None else _check_seconds(duration, "duration", allow_zero=False)
    size = None if size is None else _check_size(size)
    target = None if target_fps is None else _as_fraction(target_fps, "target_fps")
    if target is not None and stride != 1:
        raise ValueError(f"give either stride or target_fps, not both (stride={stride}, target_fps={target_fps})")

    probe = _probe(path)
    if target is not None and target > probe.fps * Fraction(1001, 1000):
        raise ValueError(
            f"target_fps={target_fps} is above the source frame rate {float(probe.fps):.3f} of '{path}'; "
            "gen1 does not invent frames"
        )
    if probe.duration is not None and probe.duration > 0 and start >= probe.duration:
        raise ValueError(f"start={start:g} s is beyond the end of '{path}' (duration {probe.duration:.3f} s)")

    def make_selector() -> _FrameSelector:
        return _FrameSelector(start, duration, stride, target, max_frames)

    result = _read_with_decord(path, probe, make_selector(), size)
    if result is None:
        result = _read_with_pyav(path, probe, make_selector(), size)
    chunks, times, selector = result
    if not chunks:
        raise _range_error(path, selector)
    fps = probe.fps / stride if target is None else target
    return VideoClip(
        frames=np.concatenate(chunks, axis=0),
        fps=fps,
        source_fps=probe.fps,
        path=path,
        has_audio=probe.has_audio,
        times=times,
    )


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``uint8 (H, W, 3)`` RGB.

    EXIF orientation is applied; transparent images are composited over white; 16-bit greyscale
    (common for depth renders) is scaled to 8 bits rather than clipped.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _existing_file(path, "image file")
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


def _stream_seconds(stream, container) -> float | None:
    """A stream's duration in seconds: its own if the container records one, else the container's, else None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def read_frames_or_images(
    path: str | os.PathLike, *, max_frames: int | None = None, size: int | None = None
) -> np.ndarray:
    """Frames ``uint8 (F, H, W, 3)`` from a video file, a single image (F = 1), or a directory of
    images read in natural order (``frame2.png`` before ``frame10.png``); all images must share a size."""
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(f"video, image or image directory not found: '{path}'")
    max_frames = None if max_frames is None else _check_positive_int(max_frames, "max_frames")
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key)
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in directory '{path}'")
        images = []
        for file in files[:max_frames]:
            image = read_image(file)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"image '{file}' is {image.shape[1]}x{image.shape[0]} but '{files[0]}' is "
                    f"{images[0].shape[1]}x{images[0].shape[0]}; an image sequence needs one size"
                )
            images.append(image)
        return _maybe_resize(np.stack(images), size)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _maybe_resize(read_image(path)[None], size)
    return read_video(path, max_frames=max_frames, size=size).frames


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _frames_to_uint8(frames: Any) -> np.ndarray:
    """``uint8 (F, H, W, 3)`` from a uint8 numpy array of that shape or a float tensor ``(F, 3, H, W)``
    in [0, 1] (clamped)."""
    if isinstance(frames, (list, tuple)) and frames and all(isinstance(f, np.ndarray) for f in frames):
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"frames must all have one shape, got {sorted(shapes)}")
        frames = np.stack(frames)
    if type(frames).__module__.startswith("torch"):
        import torch
        from einops import rearrange

        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"a frames tensor must have shape (F, 3, H, W), got {tuple(frames.shape)}")
        if frames.dtype == torch.uint8:
            raise ValueError("a frames tensor must be float in [0, 1]; pass uint8 frames as numpy (F, H, W, 3)")
        if not torch.isfinite(frames).all():
            raise ValueError("frames tensor contains NaN or infinite values")
        as_uint8 = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        return np.ascontiguousarray(rearrange(as_uint8, "f c h w -> f h w c").cpu().numpy())
    return _check_uint8_frames(frames, "frames")


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """yuv420p halves chroma resolution: pad odd height/width by repeating the last row/column."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _audio_window(source: Any, audio_start: float | None) -> tuple[Path, float, bool] | None:
    """(path, start, explicit) of the audio to copy, or None when there is none to copy."""
    if source is None:
        return None
    if isinstance(source, VideoClip):
        if not source.has_audio:
            return None
        start = source.start if audio_start is None else _check_seconds(audio_start, "audio_start", allow_zero=True)
        return _existing_file(source.path, "audio source"), start, False
    start = 0.0 if audio_start is None else _check_seconds(audio_start, "audio_start", allow_zero=True)
    return _existing_file(source, "audio source (audio_from)"), start, True


def _open_audio_source(window: tuple[Path, float, bool]):
    """Open the audio source; returns (container, audio stream) or None if it has no usable audio."""
    import av

    path, start, explicit = window
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise ValueError(f"audio_from is not a readable media file: '{path}' ({err})") from None
    if not container.streams.audio:
        container.close()
        return None
    stream = container.streams.audio[0]
    length = _stream_seconds(stream, container)
    if length is not None and start >= length:
        container.close()
        if explicit:
            raise ValueError(f"audio_start={start:g} s is beyond the end of the audio in '{path}' ({length:.3f} s)")
        return None
    return container, stream


def _copy_audio_packets(source, in_stream, output, out_stream, start: float, length: float) -> None:
    """Remux packets overlapping [start, start + length), shifted so the first one starts at 0."""
    tb = in_stream.time_base
    origin = in_stream.start_time or 0
    if start > 0:
        with contextlib.suppress(Exception):
            source.seek(origin + int(start / tb), stream=in_stream, backward=True)
    offset = None
    for packet in source.demux(in_stream):
        if packet.pts is None or packet.size == 0:
            continue
        t = float((packet.pts - origin) * tb)
        end = t + float((packet.duration or 0) * tb)
        if end <= start + _TIME_EPS:
            continue
        if t >= start + length - _TIME_EPS:
            break
        if offset is None:
            offset = packet.pts
        packet.pts -= offset
        packet.dts = packet.pts if packet.dts is None else packet.dts - offset
        packet.stream = out_stream
        output.mux(packet)


def _encode_audio(source, in_stream, output, out_stream, start: float, length: float) -> None:
    """Decode, trim (to whole decoded frames) and re-encode to AAC; the encoder resamples and
    re-buffers to its frame size."""
    in_stream.thread_type = "AUTO"
    for frame in source.decode(in_stream):
        t = frame.time or 0.0
        end = t + frame.samples / frame.sample_rate
        if end <= start + _TIME_EPS:
            continue
        if t >= start + length - _TIME_EPS:
            break
        frame.pts = None
        for packet in out_stream.encode(frame):
            output.mux(packet)
    for packet in out_stream.encode(None):
        output.mux(packet)


def _encode_video(output, stream, frames: np.ndarray) -> None:
    import av

    for index, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = index
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode(None):
        output.mux(packet)


def write_video(
    path: str | os.PathLike,
    frames: Any,
    fps: float | Fraction,
    *,
    audio_from: str | os.PathLike | VideoClip | None = None,
    audio_start: float | None = None,
    crf: int = 18,
) -> Path:
    """Write frames as an H.264 (yuv420p) mp4/mov at exactly ``fps``, atomically.

    Args:
        path: output file ending in ``.mp4``, ``.m4v`` or ``.mov``; its directory must exist.
        frames: ``uint8`` numpy ``(F, H, W, 3)`` RGB, or a float torch tensor ``(F, 3, H, W)`` in [0, 1]
            (clamped). Odd height/width are padded by one edge-repeating row/column.
        fps: frame rate; ``Fraction(30000, 1001)`` is kept exactly (floats are turned into the
            nearest simple fraction).
        audio_from: a media file, or a ``VideoClip`` (its ``path`` and ``start``), whose first audio
            stream is copied (AAC) or re-encoded to AAC, trimmed to the video's duration. No audio is
            written when it has no audio stream. ``None``: no audio.
        audio_start: where in ``audio_from`` the audio starts, in seconds (default: 0 for a path,
            ``clip.start`` for a ``VideoClip``).
        crf: x264 constant-rate-factor quality, 0 (lossless) .. 51; 18 is visually near-lossless.

    Returns:
        The output path.
    """
    import av

    from gen1.atomic import atomic_path, check_output_path

    path = Path(path)
    container_format = _OUTPUT_FORMATS.get(path.suffix.lower())
    if container_format is None:
        raise ValueError(f"output path must end in {', '.join(_OUTPUT_FORMATS)}, got '{path}'")
    check_output_path(path)  # fail before encoding anything
    array = _pad_to_even(_frames_to_uint8(frames))
    if array.shape[0] == 0:
        raise ValueError("frames is empty: a video needs at least one frame")
    rate = _as_fraction(fps, "fps")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}")
    window = _audio_window(audio_from, audio_start)
    audio = None if window is None else _open_audio_source(window)
    length = array.shape[0] / float(rate)
    try:
        with atomic_path(path) as tmp:
            with av.open(str(tmp), "w", format=container_format, container_options={"movflags": "+faststart"}) as output:
                video = output.add_stream("libx264", rate=rate, options={"crf": str(int(crf))})
                video.width, video.height, video.pix_fmt = array.shape[2], array.shape[1], "yuv420p"
                out_audio = None
                if audio is not None:
                    source, in_audio = audio
                    if in_audio.codec_context.name in _COPYABLE_AUDIO:
                        out_audio = output.add_stream_from_template(in_audio)
                    else:
                        out_audio = output.add_stream("aac", rate=in_audio.rate)
                        out_audio.layout = _STANDARD_LAYOUTS.get(in_audio.codec_context.channels, "stereo")
                _encode_video(output, video, array)
                if audio is not None:
                    source, in_audio = audio
                    start = window[1]
                    if in_audio.codec_context.name in _COPYABLE_AUDIO:
                        _copy_audio_packets(source, in_audio, output, out_audio, start, length)
                    else:
                        _encode_audio(source, in_audio, output, out_audio, start, length)
    finally:
        if audio is not None:
            audio[0].close()
    return path
