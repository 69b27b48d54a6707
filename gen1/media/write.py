"""Writing frames as H.264 mp4/mov with the source's audio, atomically.

``write_video`` encodes H.264 (libx264, ``yuv420p``, CRF quality) into mp4/mov at the exact frame rate
given (a ``Fraction`` time base, one tick per frame). ``yuv420p`` needs even dimensions: an odd height or
width is padded by one row/column that repeats the edge pixels (no content is lost; the file is at most
one pixel larger than the frames). Audio is taken from ``audio_from`` (a path or a ``VideoClip``),
starting at ``audio_start`` and trimmed to the video's duration: AAC packets are copied as they are (no
quality loss; the cut falls on an AAC frame boundary, within ~23 ms), other codecs are re-encoded to AAC.
The file is written through ``gen1.atomic.atomic_path``: a crash never leaves a half-written file under
the requested name. The same frames always give the same file (see ``_x264_options``), so a seeded edit
can be reproduced byte for byte.

Callers that edit a clip and want to keep its sound pass the clip itself::

    clip = read_video("in.mp4", max_frames=16, size=512)
    write_video("out.mp4", edited, clip.fps, audio_from=clip)   # no-op for clips without audio
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gen1.media.checks import OUTPUT_FORMATS, as_fraction, check_seconds, existing_file
from gen1.media.frames import to_uint8_frames
from gen1.media.read import TIME_EPS, VideoClip, stream_seconds

_COPYABLE_AUDIO = {"aac"}  # plays everywhere inside mp4; anything else is re-encoded to AAC
# AAC needs a layout with a channel order; sources (raw PCM) may only give a channel count
_STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """yuv420p halves chroma resolution: pad odd height/width by repeating the last row/column."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# On CPUs with AVX-512, x264 (core 165, the one in PyAV's wheels) encodes the same frames differently from run
# to run when a row is not a multiple of 8 macroblocks (128 px) wide: seen here by up to 25 levels on some
# pixels (44-52 dB apart), in 1 of 200 to most encodes depending on the size and content (seen at 64, 96, 192,
# 320, 448, 576, 704 px wide; never in 30-150 encodes at 128, 256, 384, 512, 768 px). Its AVX-512
# macroblock-tree code evidently reads past the end of a row: limiting x264 to AVX2, or turning mbtree off,
# makes every encode the same (300 of 300).
_MBTREE_SAFE_MACROBLOCKS = 8


def _x264_options(width: int, crf: int) -> dict[str, str]:
    """libx264 options: CRF quality, and the macroblock tree only where it encodes deterministically.

    Turning mbtree off at the other widths changes the file size by -2 to +24 % at the same CRF (PSNR to the
    source within 0.7 dB either way, measured on the shared clips at 64, 192 and 320 px); being able to
    reproduce an edit exactly (``gen1 serve`` shows the command that does) is worth more.
    """
    options = {"crf": str(int(crf))}
    macroblocks = -(-width // 16)
    if macroblocks % _MBTREE_SAFE_MACROBLOCKS:
        options["x264-params"] = "mbtree=0"
    return options


def _audio_window(source: Any, audio_start: float | None) -> tuple[Path, float, bool] | None:
    """(path, start, explicit) of the audio to copy, or None when there is none to copy."""
    if source is None:
        return None
    if isinstance(source, VideoClip):
        if not source.has_audio:
            return None
        start = source.start if audio_start is None else check_seconds(audio_start, "audio_start", allow_zero=True)
        return existing_file(source.path, "audio source"), start, False
    start = 0.0 if audio_start is None else check_seconds(audio_start, "audio_start", allow_zero=True)
    return existing_file(source, "audio source (audio_from)"), start, True


def _open_audio_source(window: tuple[Path, float, bool]):
    """Open the audio source; returns (container, audio stream) or None if it has no usable audio."""
    import av  # lazy: av is heavy and only this path needs it

    path, start, explicit = window
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise ValueError(f"audio_from is not a readable media file: '{path}' ({err})") from None
    if not container.streams.audio:
        container.close()
        return None
    stream = container.streams.audio[0]
    length = stream_seconds(stream, container)
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
        if end <= start + TIME_EPS:
            continue
        if t >= start + length - TIME_EPS:
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
        if end <= start + TIME_EPS:
            continue
        if t >= start + length - TIME_EPS:
            break
        frame.pts = None
        for packet in out_stream.encode(frame):
            output.mux(packet)
    for packet in out_stream.encode(None):
        output.mux(packet)


def _encode_video(output, stream, frames: np.ndarray) -> None:
    import av  # lazy: av is heavy and only this path needs it

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
    import av  # lazy: av is heavy and only this path needs it

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.atomic import atomic_path, check_output_path

    path = Path(path)
    container_format = OUTPUT_FORMATS.get(path.suffix.lower())
    if container_format is None:
        raise ValueError(f"output path must end in {', '.join(OUTPUT_FORMATS)}, got '{path}'")
    check_output_path(path)  # fail before encoding anything
    array = _pad_to_even(to_uint8_frames(frames))
    if array.shape[0] == 0:
        raise ValueError("frames is empty: a video needs at least one frame")
    rate = as_fraction(fps, "fps")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}")
    window = _audio_window(audio_from, audio_start)
    audio = None if window is None else _open_audio_source(window)
    length = array.shape[0] / float(rate)
    try:
        with atomic_path(path) as tmp:
            with av.open(str(tmp), "w", format=container_format, container_options={"movflags": "+faststart"}) as output:
                video = output.add_stream("libx264", rate=rate, options=_x264_options(array.shape[2], crf))
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
