"""Reading videos as ``uint8 (F, H, W, 3)`` RGB frames with their exact timing.

Two decoders. A read at the source resolution (no ``size``) uses decord when it is installed and opens
the file (random access to just the frames asked for), fetching at most :data:`DECODE_BATCH_BYTES` of
frames at a time. A read that resizes (``size``) uses PyAV, which decodes, converts and resizes one frame
at a time, so memory holds the output and a few source frames, whatever the source resolution and
however many frames are read. decord is not used there because it keeps dozens of decoded
full-resolution frames in pools of its own that no batching on our side can bound (a 720p clip of 120
frames read at size 64 costs about 220 MB more through decord, 12 MB through PyAV). PyAV is also the
fallback when decord is missing, fails, or misreports the file (GIFs, broken metadata, a frame count that
disagrees with the container). decord's ffmpeg chatter on stderr is silenced so a fallback is quiet. The
container is always probed with PyAV, which gives the *exact* source frame rate as a ``Fraction``
(``30000/1001``, not ``29.97``) and whether the file has audio.

Frames are returned as players show them: a clip stored turned, with a display rotation (a phone's portrait
video is stored landscape, tagged 90 or -90 degrees), is turned upright as it is read, so sizes, masks, drags and
the written edit follow what the user saw (the edit is written upright, untagged). Likewise a clip of non-square
pixels (a sample aspect ratio other than 1: anamorphic DV, 720x480 at 8:9 or 32:27, shown 640x480 or 853x480) is
scaled to its display width as it is read (the height kept, as players do), so the edit is neither squashed nor
stretched against what players show, and is written with square pixels.

Frame selection works on presentation timestamps (seconds from the start of the video stream), so it is
right for variable-frame-rate files too:

* ``start`` / ``duration``: the window is the frames with ``start <= t < start + duration``;
* ``stride``: every ``stride``-th frame of the window (``fps = source_fps / stride``);
* ``target_fps``: for each tick ``t0 + k / target_fps`` the first frame at or after the tick (never a
  frame twice; ``target_fps`` above the source rate is an error: we do not invent frames);
* ``max_frames``: at most this many frames, from the start of the selection.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gen1.media.checks import as_fraction, check_positive_int, check_seconds, existing_file
from gen1.media.resize import check_size, resize_frames

TIME_EPS = 1e-4  # seconds; frame timestamps from decord are float32
DECODE_BATCH_BYTES = 8 * 2**20  # frames fetched from decord at a time (at least one)


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


@dataclass(frozen=True)
class _Probe:
    """What PyAV's demuxer says about a file, before any frame is decoded."""

    fps: Fraction
    has_audio: bool
    num_frames: int  # 0 when the container does not say
    duration: float | None  # seconds, None when unknown
    format_name: str
    height: int  # frame size as shown, upright and in square pixels (0 when unknown)
    width: int
    quarter_turns: int = 0  # counter-clockwise turns that make a decoded frame upright (its display rotation)
    pixel_aspect: Fraction = Fraction(1)  # the stored pixels' width / height (sample aspect ratio; 1: square)


def _probe(path: Path) -> _Probe:
    """What the file's header (and first frame: its display rotation) says; kept per file version, since a read,
    its size checks and the web app's canvas clicks ask again of one file."""
    try:
        stat = path.stat()
    except OSError:
        return _probe_file(path)  # says what is wrong with it
    return _probe_version(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _probe_version(path: str, size: int, mtime_ns: int) -> _Probe:
    """:func:`_probe` of one version of a file (``size`` and ``mtime_ns`` name it: a rewritten file is probed
    again). Failures are not cached."""
    return _probe_file(Path(path))


def _probe_file(path: Path) -> _Probe:
    import av  # lazy: av is heavy and only this path needs it

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
        turns = _first_frame_quarter_turns(container, stream)
        aspect = pixel_aspect(stream, path)
        shown = (int(stream.codec_context.height or 0), display_width(int(stream.codec_context.width or 0), aspect))
        duration = stream_seconds(stream, container)
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
            height=shown[1] if turns % 2 else shown[0],
            width=shown[0] if turns % 2 else shown[1],
            quarter_turns=turns,
            pixel_aspect=aspect,
        )


#: The widest (and, inverted, the narrowest) pixel a clip's sample aspect ratio is taken from: anamorphic formats
#: stay well within it (DV 8:9 to 32:27, HDV 4:3, 2:1 anamorphic); a ratio beyond it is a damaged header, which
#: would read a 720x480 clip 183600 px wide at 255:1.
MAX_PIXEL_ASPECT = 4


def pixel_aspect(stream, path=None) -> Fraction:
    """The sample aspect ratio of a PyAV video ``stream`` (the width / height of one stored pixel), as players take
    it: the container's if it records one, else the codec's, else 1 (square). One beyond :data:`MAX_PIXEL_ASPECT`
    either way is ignored with a warning naming ``path`` (the pixels are read as square)."""
    for ratio in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if ratio is not None and ratio.numerator > 0 and ratio.denominator > 0:
            aspect = Fraction(ratio)
            if not 1 / MAX_PIXEL_ASPECT <= aspect <= MAX_PIXEL_ASPECT:
                import warnings

                warnings.warn(f"'{path or 'the video'}' says its pixels are {aspect.numerator}:{aspect.denominator} "
                              f"(wider than {MAX_PIXEL_ASPECT}:1 either way, a damaged header): read as square pixels",
                              stacklevel=2)
                return Fraction(1)
            return aspect
    return Fraction(1)


def display_width(width: int, aspect: Fraction) -> int:
    """The width, in square pixels, that a stored ``width`` of pixels ``aspect`` wide is shown at (the height is
    kept, as players scale)."""
    return width if aspect == 1 or width <= 0 else max(1, round(width * aspect))


def _rgb_shown(frame, aspect: Fraction, channel: str = "rgb") -> np.ndarray:
    """A decoded PyAV ``frame`` as ``uint8 (1, H, W, 3)`` RGB as shown: scaled to square pixels (its display width,
    area averaging to narrow, bicubic to widen) and turned upright. ``channel="alpha"``: its alpha instead (255 where
    the frame has none), ``(1, H, W, 1)``."""
    format_name = "rgb24" if channel == "rgb" else "rgba"
    if aspect == 1:
        array = frame.to_ndarray(format=format_name)
    else:
        array = frame.to_ndarray(format=format_name, width=display_width(frame.width, aspect), height=frame.height,
                                 interpolation="AREA" if aspect < 1 else "BICUBIC")
    if channel != "rgb":
        array = np.ascontiguousarray(array[..., 3:])
    return upright(array[None], quarter_turns(frame))


def quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns (0-3) that make a decoded PyAV ``frame`` upright, from its display rotation in
    degrees (``VideoFrame.rotation``: a phone's portrait clip is stored landscape with 90 or -90 there, and players
    turn it; PyAV before 13 has no rotation: 0)."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def _first_frame_quarter_turns(container, stream) -> int:
    """The display rotation of the stream's first frame as quarter turns (0 when it cannot be decoded: the read
    itself then says what is wrong). PyAV shows the rotation on frames only, so one frame is decoded."""
    import av  # lazy: av is heavy and only this path needs it

    try:
        for frame in container.decode(stream):
            return quarter_turns(frame)
    except (av.FFmpegError, ValueError):
        return 0
    return 0


def upright(frames: np.ndarray, turns: int) -> np.ndarray:
    """``(..., H, W, C)`` frames turned counter-clockwise by ``turns`` quarter turns, contiguous."""
    return frames if turns % 4 == 0 else np.ascontiguousarray(np.rot90(frames, turns, axes=(-3, -2)))


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
        if self.done or t < self.start - TIME_EPS:
            return False
        if t >= self.end - TIME_EPS:
            self.done = True
            return False
        index = self.seen_in_window
        self.seen_in_window += 1
        if self.first_time is None:
            self.first_time = t
        if self.tick is not None:
            keep = t >= self.first_time + self.next_tick * self.tick - TIME_EPS
            while self.first_time + self.next_tick * self.tick <= t + TIME_EPS:
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
    if selector.last_time is not None and selector.last_time < selector.start - TIME_EPS:
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


def _read_with_decord(path: Path, probe: _Probe, selector: _FrameSelector):
    """Frames at the source resolution and their times via decord, or None when decord is missing, fails, or
    disagrees with PyAV."""
    import cv2  # noqa: F401  -- before decord: decord's bundled zlib, loaded first, breaks OpenCV's PNG codec

    try:
        import decord
    except ImportError:
        return None
    if probe.format_name == "gif":  # decord cannot measure GIF durations
        return None
    if probe.quarter_turns:  # decord turns some rotated clips itself (180 degrees) and not others: PyAV reads them
        return None
    if probe.pixel_aspect != 1:  # decord gives the stored pixels: PyAV scales them to the display width
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
            per_batch = max(1, DECODE_BATCH_BYTES // max(1, probe.height * probe.width * 3))
            for begin in range(0, len(indices), per_batch):
                batch = _to_numpy(reader.get_batch(indices[begin : begin + per_batch]))
                chunks.append(np.ascontiguousarray(batch, dtype=np.uint8))
            return chunks, times[indices], selector
    except Exception:  # decord raises its own error types (and RuntimeError); PyAV gives the real message
        return None


def _read_with_pyav(path: Path, probe: _Probe, selector: _FrameSelector, size: int | None):
    """Frames (each resized to ``size`` as soon as it is decoded) and their times, decoding sequentially."""
    import av  # lazy: av is heavy and only this path needs it

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
                        rgb = _rgb_shown(frame, probe.pixel_aspect)
                        frames.append(rgb if size is None else resize_frames(rgb, size))
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
        size: target short side (a multiple of 8, at most ``MAX_SIZE``); the long side is centre-cropped
            to a multiple of 8 (:mod:`gen1.media.resize`). Each frame is resized as it is decoded.

    Returns:
        ``VideoClip`` with ``frames``, ``fps`` (after stride / target_fps), ``source_fps``, ``path``,
        ``has_audio`` and per-frame ``times``.

    Raises:
        MediaNotFoundError: ``path`` does not exist.
        ValueError: not a video, no decodable frames, corrupt/truncated data, ``start`` beyond the
            end, or a bad argument value.
    """
    path = existing_file(path, "video file")
    stride = check_positive_int(stride, "stride")
    max_frames = None if max_frames is None else check_positive_int(max_frames, "max_frames")
    start = check_seconds(start, "start", allow_zero=True)
    duration = None if duration is None else check_seconds(duration, "duration", allow_zero=False)
    size = None if size is None else check_size(size)
    target = None if target_fps is None else as_fraction(target_fps, "target_fps")
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

    result = None if size is not None else _read_with_decord(path, probe, make_selector())
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


def stream_seconds(stream, container) -> float | None:
    """A stream's duration in seconds: its own if the container records one, else the container's, else None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def frame_times(path: str | os.PathLike) -> np.ndarray:
    """The presentation time of every frame of a video (seconds from its stream start, ascending), from its packets'
    timestamps: demuxed, not decoded. Frames without a timestamp are left out."""
    import av  # lazy: av is heavy and only this path needs it

    path = existing_file(path, "video file")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb, origin = stream.time_base, stream.start_time or 0
        stamps = [packet.pts for packet in container.demux(stream) if packet.pts is not None and packet.size]
    return np.sort(np.asarray([float((pts - origin) * tb) for pts in stamps], dtype=np.float64))


def frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of a video's frames as shown (upright, in square pixels), from its header and its first
    frame."""
    probe = _probe(Path(path))
    return probe.height, probe.width


def read_video_at(path: str | os.PathLike, times, *, size: int | None = None,
                  alpha: bool = False) -> tuple[np.ndarray, Fraction]:
    """The frames of a video shown at ``times`` (seconds from its stream start, ascending): for each, the last frame
    at or before it, as a player shows it; and the video's frame rate.

    This puts a video made at another frame rate (a mask, a depth video) on another clip's timeline: frame ``i`` is
    what the video shows at ``times[i]``. Frames are held for as long as the file says (a GIF holds a frame that did
    not change; a variable-frame-rate video spaces its frames unevenly), the last one until the stream ends. A video
    that ends earlier covers only the first times: the frames returned are fewer than ``times``, none when it ends
    before the first. ``alpha`` (a mask): a video with transparent pixels in some frame is read as its alpha in
    every frame, as :func:`gen1.media.images.alpha_mask` reads an image (white where it is not transparent, black
    elsewhere; decided once, so a frame the painted subject fills whole stays the region). FFmpeg's own VP9 decoder
    drops a WebM's alpha: such a mask reads as its colours.
    """
    import av  # lazy: av is heavy and only this path needs it

    path = existing_file(path, "video file")
    times = np.asarray(times, dtype=np.float64)
    probe = _probe(path)
    shown: list[tuple] = []  # per time: the frame on screen (_shown_frame)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb, origin = stream.time_base, stream.start_time or 0
        if times[0] > 0 and tb is not None:  # the frame on screen at times[0] begins at or after this keyframe
            with contextlib.suppress(av.FFmpegError):
                container.seek(origin + int(times[0] / tb), stream=stream, backward=True)
        on_screen, converted, start, end, index = None, None, 0.0, 0.0, 0
        try:
            for frame in container.decode(stream):
                timed = frame.pts is not None and tb is not None
                start = float((frame.pts - origin) * tb) if timed else end
                while index < len(times) and on_screen is not None and start > times[index] + TIME_EPS:
                    converted = converted or _shown_frame(on_screen, probe, size, alpha)  # a frame shown, converted
                    shown.append(converted)  # still on screen at times[index]
                    index += 1
                if index == len(times):
                    break
                on_screen, converted = frame, None
                held = float(frame.duration * tb) if timed and frame.duration else 1.0 / float(probe.fps)
                end = start + held
        except av.FFmpegError as err:
            raise ValueError(f"video '{path}' is corrupt or truncated: decoding failed ({err})") from None
    if on_screen is not None and index < len(times):  # the last frame, held until the stream ends
        end = max(end, probe.duration or 0.0)
        converted = converted or _shown_frame(on_screen, probe, size, alpha)
        while index < len(times) and times[index] < end - TIME_EPS:
            shown.append(converted)
            index += 1
    if not shown:
        return np.zeros((0, 0, 0, 3), np.uint8), probe.fps
    by_alpha = any(transparent for _, _, transparent in shown)  # decided once for the whole video
    return np.concatenate([region if by_alpha else rgb for rgb, region, _ in shown]), probe.fps


def _shown_frame(frame, probe: _Probe, size: int | None, alpha: bool) -> tuple:
    """A decoded PyAV ``frame`` as shown (:func:`_rgb_shown`), resized to ``size``: ``uint8 (1, H, W, 3)``; with
    ``alpha``, also its region by alpha (white where it is not transparent) and whether it has a transparent
    pixel (else None, False)."""
    rgb = _rgb_shown(frame, probe.pixel_aspect)
    region, transparent = None, False
    if alpha:
        opacity = _rgb_shown(frame, probe.pixel_aspect, channel="alpha")
        transparent = int(opacity.min()) == 0
        region = np.repeat(np.where(opacity > 0, 255, 0).astype(np.uint8), 3, axis=-1)
    if size is not None:
        rgb = resize_frames(rgb, size)
        region = None if region is None else resize_frames(region, size)
    return rgb, region, transparent
