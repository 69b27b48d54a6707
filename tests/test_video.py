"""Tests for gen1.media (imported as gen1.media): reading real and synthetic videos, frame selection, resizing,
memory, writing with audio."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from process_helpers import ENV

import gen1.media.read as media_read
import gen1.media.write as media_write
from gen1.media import MAX_SIZE, fit_frames, frame_size, to_uint8_frames
from gen1.media import (
    MediaNotFoundError,
    VideoClip,
    read_frames_or_images,
    read_image,
    read_video,
    resize_frames,
    resized_shape,
    write_video,
)

# ------------------------------------------------------------------------------------------
# helpers: small videos whose frame i has brightness 10 + 6 * i, so a read frame tells its index
# ------------------------------------------------------------------------------------------


def _level(i: int) -> int:
    return 10 + 6 * i


def _indices(frames: np.ndarray) -> list[int]:
    return [round((float(f.mean()) - 10) / 6) for f in frames]


def _make_video(
    path: Path,
    num_frames: int = 30,
    *,
    fps: int | Fraction = 10,
    size: tuple[int, int] = (48, 64),
    codec: str = "libx264",
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    audio_rate: int = 16000,
    container_options: dict | None = None,
) -> Path:
    """Write a test video with PyAV; ``audio`` ("aac" / "pcm_s16le") adds a 440 Hz tone as long as the video."""
    height, width = size
    with av.open(str(path), "w", container_options=container_options or {}) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if time_base is not None:
            video.codec_context.time_base = time_base
        audio_stream = None
        if audio is not None:
            audio_stream = out.add_stream(audio, rate=audio_rate)
            audio_stream.layout = "mono"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), _level(i), np.uint8), format="rgb24")
            frame.pts = i if pts is None else pts[i]
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio_stream is not None:
            total = int(round(num_frames / float(fps) * audio_rate))
            tone = (np.sin(2 * np.pi * 440 * np.arange(total) / audio_rate) * 8000).astype(np.int16)
            audio_format = "s16p" if audio == "aac" else "s16"
            for begin in range(0, total, 1024):
                chunk = tone[None, begin : begin + 1024]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=audio_format, layout="mono")
                frame.sample_rate, frame.pts = audio_rate, begin
                for packet in audio_stream.encode(frame):
                    out.mux(packet)
            for packet in audio_stream.encode(None):
                out.mux(packet)
    return path


def _streams(path: Path) -> dict:
    """Per stream type: codec name, rate, duration in seconds (and size / pixel format for video)."""
    info = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            entry = {"codec": stream.codec_context.name}
            if stream.duration is not None:
                entry["duration"] = float(stream.duration * stream.time_base)
            if stream.type == "video":
                entry.update(rate=stream.average_rate, width=stream.width, height=stream.height,
                             pix_fmt=stream.codec_context.pix_fmt, frames=stream.frames)
            elif stream.type == "audio":
                entry.update(rate=stream.rate)
            info[stream.type] = entry
    return info


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """30 frames at 10 fps, 64x48, frame i has brightness 10 + 6 i."""
    return _make_video(tmp_path_factory.mktemp("video") / "indexed.mp4")


@pytest.fixture(params=["decord", "pyav"])
def backend(request, monkeypatch):
    """Run a test through decord and again through the PyAV fallback."""
    if request.param == "pyav":
        monkeypatch.setattr(media_read, "_read_with_decord", lambda *args: None)
    return request.param


# ------------------------------------------------------------------------------------------
# real clips
# ------------------------------------------------------------------------------------------

REAL_CLIPS = {
    # name: (frames, height, width, fps, has_audio)
    "car-turn.mp4": (80, 480, 480, Fraction(10), False),
    "man-skiing.mp4": (91, 718, 718, Fraction(30000, 1001), True),
    "wolf.mp4": (40, 512, 512, Fraction(20), False),
    "blackswan.mp4": (42, 480, 854, Fraction(20), False),
}


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_real_clips_frame_counts_sizes_and_exact_fps(clips_dir, name):
    num_frames, height, width, fps, has_audio = REAL_CLIPS[name]
    clip = read_video(clips_dir / name)
    assert clip.frames.shape == (num_frames, height, width, 3)
    assert clip.frames.dtype == np.uint8
    assert clip.fps == fps and clip.source_fps == fps
    assert isinstance(clip.fps, Fraction)
    assert clip.has_audio is has_audio
    assert clip.path == clips_dir / name
    np.testing.assert_allclose(clip.times, np.arange(num_frames) / float(fps), atol=1e-3)
    assert clip.frames[::10, ::8, ::8].std() > 10  # real footage, not blank frames


def test_real_clip_through_pyav_fallback_matches_decord(clips_dir, monkeypatch):
    fast = read_video(clips_dir / "wolf.mp4", start=1.0, max_frames=3)
    monkeypatch.setattr(media_read, "_read_with_decord", lambda *args: None)
    slow = read_video(clips_dir / "wolf.mp4", start=1.0, max_frames=3)
    assert fast.frames.shape == slow.frames.shape == (3, 512, 512, 3)
    np.testing.assert_allclose(fast.times, slow.times, atol=1e-3)
    assert np.abs(fast.frames.astype(int) - slow.frames).mean() < 1.0
    whole = read_video(clips_dir / "wolf.mp4", size=64)  # PyAV reads every frame, resizing as it goes
    assert whole.frames.shape == (40, 64, 64, 3) and whole.fps == 20


def _write_turned(path: Path, frame: np.ndarray, degrees: int, count: int = 3, pixel_aspect=None) -> None:
    """A clip stored as ``frame`` and tagged with a display rotation of ``degrees`` (as phones store portrait) and,
    given, a sample aspect ratio ``pixel_aspect`` (non-square pixels, as anamorphic DV stores them)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        if degrees:
            stream.set_display_rotation(degrees)
        if pixel_aspect is not None:
            stream.codec_context.sample_aspect_ratio = pixel_aspect
        for _ in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("degrees, turns", [(90, 1), (-90, 3), (180, 2)])
def test_a_clip_with_a_display_rotation_is_read_upright(tmp_path, degrees, turns):
    # a phone's portrait clip (stored 854x480, tagged 90 degrees) was read landscape: the edit came out sideways and
    # masks, drags and sizes did not match what the user saw (players turn it: ffmpeg shows np.rot90(frame, 1))
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:16, :16] = 255  # a white block in the stored frame's top-left corner
    path = tmp_path / "turned.mp4"
    _write_turned(path, stored, degrees)
    shown = np.rot90(stored, turns)
    clip = read_video(path)
    assert clip.frames.shape == (3, *shown.shape)
    assert np.abs(clip.frames[0].astype(int) - shown).mean() < 8  # codec noise only
    assert frame_size(path) == shown.shape[:2]
    small = read_video(path, size=16)
    assert small.frames.shape[1:3] == resized_shape(*shown.shape[:2], 16)


@pytest.mark.parametrize("aspect, degrees", [(Fraction(8, 9), 0), (Fraction(32, 27), 0), (Fraction(32, 27), 90)])
def test_a_clip_of_non_square_pixels_is_read_at_its_display_aspect(tmp_path, aspect, degrees):
    # anamorphic clips (DV 720x480 at 8:9 or 32:27) were read at their stored size: the edit came out squashed or
    # stretched against what players show, and masks drawn on the shown frame did not fit it
    from gen1.media import write_video

    stored = np.zeros((48, 72, 3), np.uint8)
    stored[:, :36] = 255  # the stored frame's left half white
    path = tmp_path / "anamorphic.mp4"
    _write_turned(path, stored, degrees, pixel_aspect=aspect)
    width = round(72 * aspect)  # players scale the width, the height kept: 64 or 85
    shown = np.zeros((48, width, 3), np.uint8)
    shown[:, : width // 2] = 255  # still half white: scaled, not cropped
    shown = np.rot90(shown, degrees // 90)
    clip = read_video(path)
    assert clip.frames.shape == (3, *shown.shape)
    assert np.abs(clip.frames[0].astype(int) - shown).mean() < 8  # codec and scaling noise only
    assert frame_size(path) == shown.shape[:2]  # the size masks and drags are given in
    assert read_video(path, size=16).frames.shape[1:3] == resized_shape(*shown.shape[:2], 16)
    out = write_video(tmp_path / "edit.mp4", clip.frames, clip.fps)  # written with square pixels
    with av.open(str(out)) as container:
        assert media_read.pixel_aspect(container.streams.video[0]) == 1
    assert frame_size(out) == tuple(n + n % 2 for n in shown.shape[:2])  # yuv420p: an odd side padded by one


def test_an_implausible_pixel_aspect_is_ignored_with_a_warning(tmp_path):
    # a damaged header's 255:1 read a 720x480 clip 183600 px wide, seconds a frame to scale (5:1 here: what PyAV's
    # encoder stores)
    stored = np.zeros((48, 72, 3), np.uint8)
    for aspect in (Fraction(5, 1), Fraction(1, 5)):
        path = tmp_path / f"damaged-{aspect.numerator}-{aspect.denominator}.mp4"
        _write_turned(path, stored, 0, pixel_aspect=aspect)
        with pytest.warns(UserWarning, match=r"says its pixels are .*damaged header.*read as square pixels"):
            assert frame_size(path) == (48, 72)
        assert read_video(path).frames.shape == (3, 48, 72, 3)


def test_resize_blackswan_to_short_side_64_keeps_aspect_and_multiple_of_8(clips_dir):
    clip = read_video(clips_dir / "blackswan.mp4", size=64, max_frames=2)
    assert clip.frames.shape == (2, 64, 112, 3)  # 854 * 64 / 480 = 113.9 -> 114 -> centre-cropped to 112
    assert clip.height % 8 == 0 and clip.width % 8 == 0
    assert abs(clip.width - 854 * 64 / 480) < 8
    assert resized_shape(480, 854, 64) == (64, 112)


# ------------------------------------------------------------------------------------------
# resizing policy
# ------------------------------------------------------------------------------------------


def test_resize_frames_portrait_upscale_and_centre_crop():
    frames = np.zeros((2, 37, 20, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(37, dtype=np.uint8)[None, :, None] * 6  # vertical ramp
    out = resize_frames(frames, 16)
    assert out.shape == (2, 24, 16, 3)  # 37 * 16 / 20 = 29.6 -> 30 -> crop to 24 (3 rows each side)
    assert resized_shape(37, 20, 16) == (24, 16)
    ramp = out[0, :, 8, 0].astype(int)
    assert ramp[0] > 0 and ramp[-1] < 216 and np.all(np.diff(ramp) >= 0)  # centre of the ramp, order kept
    same = np.random.default_rng(0).integers(0, 255, (1, 16, 24, 3), dtype=np.uint8)
    assert np.array_equal(resize_frames(same, 16), same)  # already at size: untouched


@pytest.mark.parametrize("size", [0, 30, -8, 12.0, True, 4104, 100_000])
def test_resize_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        resize_frames(np.zeros((1, 16, 16, 3), np.uint8), size)


def test_size_has_an_upper_limit_checked_before_decoding(indexed, tmp_path, capsys, monkeypatch):
    assert MAX_SIZE == 4096
    assert resized_shape(16, 16, MAX_SIZE) == (MAX_SIZE, MAX_SIZE)
    with pytest.raises(ValueError, match="size .*at most 4096.* got 100000"):
        read_video(indexed, size=100_000)

    def no_decoding(*args):
        raise AssertionError("the video was opened")

    monkeypatch.setattr(media_read, "_probe", no_decoding)
    from gen1.cli import main

    code = main(["edit", str(indexed), "-o", str(tmp_path / "out.mp4"), "--prompt", "x", "--size", "100000"])
    err = capsys.readouterr().err
    assert code == 2 and "--size" in err and "4096" in err and "Traceback" not in err


def _ramps(num_frames: int, height: int, width: int) -> np.ndarray:
    """Red rises 3 per column, green 5 per row: a resize shows its scale and crop in the values."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 3, y * 5, np.full_like(x, 100)], -1).astype(np.uint8)
    return np.repeat(frame[None], num_frames, axis=0)


def test_one_resize_policy_for_uint8_frames_and_float_tensors():
    """The reader (uint8, OpenCV) and the pipeline (float, gen1.conditioning) size, scale and crop alike."""
    from gen1.conditioning import resize, target_size

    frames = _ramps(2, 48, 80)
    as_tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert target_size(48, 80, size=16) == resized_shape(48, 80, 16) == (16, 24)
    assert target_size(48, 80, size=16, multiple=2) == resized_shape(48, 80, 16, multiple=2) == (16, 26)
    for shape in [(16, 24), (16, 16), (40, 24)]:
        by_frames = fit_frames(frames, shape).astype(float)
        by_tensor = resize(as_tensor, shape).permute(0, 2, 3, 1).numpy() * 255
        assert by_frames.shape == by_tensor.shape == (2, *shape, 3)
        assert np.abs(by_frames - by_tensor).mean() < 2
    # a square from a wide frame: scaled by 1/3 (not squeezed by 1/5), the middle columns kept
    row = fit_frames(frames, (16, 16))[0, 8, :, 0].astype(float)
    assert np.diff(row)[2:-2] == pytest.approx(9, abs=1.5)  # 3 source columns per pixel, 3 per column
    assert row[7:9].mean() == pytest.approx(3 * 40, abs=6)  # the source's centre column stays in the centre
    assert np.array_equal(resize_frames(frames, 16), fit_frames(frames, (16, 24)))
    # points (a click, a drag) land where fit_frames puts their pixels: 80 x 48 covers 16 x 16 as 27 x 16, cropped
    # 5 columns from the left; pixel centres map to pixel centres
    from gen1.media.resize import fit_points, unfit_points

    points = [[40.0, 24.0], [25.0, 1.0]]
    np.testing.assert_allclose(fit_points(points, (48, 80), (16, 16)),
                               [[40.5 * 27 / 80 - 0.5 - 5, 24.5 / 3 - 0.5], [25.5 * 27 / 80 - 0.5 - 5, 1.5 / 3 - 0.5]])
    np.testing.assert_allclose(unfit_points(fit_points(points, (48, 80), (16, 16)), (48, 80), (16, 16)), points)
    with pytest.raises(ValueError, match="size .*at most 4096"):
        target_size(48, 80, size=100_000)


# ------------------------------------------------------------------------------------------
# frame selection (both backends)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, expected, fps",
    [
        ({}, list(range(30)), Fraction(10)),
        ({"stride": 3}, list(range(0, 30, 3)), Fraction(10, 3)),
        ({"target_fps": 5}, list(range(0, 30, 2)), Fraction(5)),
        ({"target_fps": 2.5}, list(range(0, 30, 4)), Fraction(5, 2)),
        ({"max_frames": 4}, [0, 1, 2, 3], Fraction(10)),
        ({"start": 1.0, "duration": 0.5}, [10, 11, 12, 13, 14], Fraction(10)),
        ({"start": 0.95}, list(range(10, 30)), Fraction(10)),
        ({"start": 1.0, "stride": 2, "max_frames": 3}, [10, 12, 14], Fraction(5)),
        ({"start": 2.0, "target_fps": 5, "duration": 10}, [20, 22, 24, 26, 28], Fraction(5)),
    ],
)
def test_frame_selection(indexed, backend, kwargs, expected, fps):
    clip = read_video(indexed, **kwargs)
    assert _indices(clip.frames) == expected
    assert clip.fps == fps and clip.source_fps == 10
    np.testing.assert_allclose(clip.times, np.array(expected) / 10, atol=1e-3)
    assert clip.start == pytest.approx(expected[0] / 10, abs=1e-3)


@pytest.mark.parametrize("start", [3.0, 2.95, 100.0])
def test_start_beyond_the_end(indexed, backend, start):
    with pytest.raises(ValueError, match=r"start=.*beyond the end"):
        read_video(indexed, start=start)


def test_range_between_two_frames_is_empty(indexed, backend):
    with pytest.raises(ValueError, match=r"no frame .* start=1.01 s, duration=0.05 s"):
        read_video(indexed, start=1.01, duration=0.05)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"stride": 0}, "stride"),
        ({"stride": 1.5}, "stride"),
        ({"target_fps": 0}, "target_fps"),
        ({"target_fps": -5}, "target_fps"),
        ({"target_fps": float("nan")}, "target_fps"),
        ({"target_fps": 30}, "target_fps"),  # above the source's 10 fps
        ({"target_fps": 5, "stride": 2}, "target_fps"),
        ({"max_frames": 0}, "max_frames"),
        ({"start": -1}, "start"),
        ({"start": "soon"}, "start"),
        ({"duration": 0}, "duration"),
        ({"size": 30}, "size"),
    ],
)
def test_bad_read_arguments_name_the_argument(indexed, kwargs, name):
    with pytest.raises(ValueError, match=name):
        read_video(indexed, **kwargs)


# ------------------------------------------------------------------------------------------
# other containers and frame rates
# ------------------------------------------------------------------------------------------


def test_variable_frame_rate(tmp_path, backend):
    pts = [0, 1, 2, 5, 6, 10, 11, 12, 20, 21, 22, 23]  # in 1/30 s: bursts and gaps
    path = _make_video(tmp_path / "vfr.mp4", len(pts), fps=30, pts=pts, time_base=Fraction(1, 30))
    clip = read_video(path)
    assert _indices(clip.frames) == list(range(12))
    np.testing.assert_allclose(clip.times, np.array(pts) / 30, atol=1e-3)
    # the average rate (frames / duration) keeps the clip's length when written back at constant fps
    assert 12 / 0.9 <= float(clip.fps) <= 12 / 0.75
    # resampling picks the first frame at or after each 0.1 s tick, never a frame twice
    resampled = read_video(path, target_fps=10)
    assert _indices(resampled.frames) == [0, 3, 4, 5, 7, 8, 9]


def test_webm_and_gif(tmp_path):
    webm = _make_video(tmp_path / "clip.webm", 8, codec="libvpx-vp9")
    clip = read_video(webm)
    assert _indices(clip.frames) == list(range(8)) and clip.fps == 10

    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    images = [Image.new("RGB", (24, 16), c) for c in colours]
    gif = tmp_path / "clip.gif"
    images[0].save(gif, save_all=True, append_images=images[1:], duration=50, loop=0)
    clip = read_video(gif)
    assert clip.frames.shape == (5, 16, 24, 3)
    assert clip.fps == 20
    assert [tuple(int(v) for v in f[8, 12]) for f in clip.frames] == colours
    strided = read_video(gif, stride=2)
    assert [tuple(int(v) for v in f[8, 12]) for f in strided.frames] == colours[::2] and strided.fps == 10


# ------------------------------------------------------------------------------------------
# broken inputs
# ------------------------------------------------------------------------------------------


def test_missing_path_directory_and_non_videos(tmp_path):
    with pytest.raises(MediaNotFoundError, match="nope.mp4") as info:
        read_video(tmp_path / "nope.mp4")
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    with pytest.raises(ValueError, match="directory"):
        read_video(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(ValueError, match="not a readable video file: .*notes.mp4"):
        read_video(text)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4"):
        read_video(empty)
    image = tmp_path / "still.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(ValueError, match="still image"):
        read_video(image)


def test_audio_only_file_has_no_video_stream(tmp_path):
    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(ValueError, match="no video stream"):
        read_video(wav)


def test_truncated_files(tmp_path, capfd):
    frames = np.random.default_rng(0).integers(0, 255, (30, 48, 64, 3), dtype=np.uint8)
    full = write_video(tmp_path / "full.mp4", frames, 10)  # moov first (faststart): a cut keeps the index
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.mp4.*(truncated|corrupt)"):
        read_video(cut)
    # the first frames are intact: asking only for them works
    assert read_video(cut, max_frames=3).frames.shape == (3, 48, 64, 3)

    no_index = _make_video(tmp_path / "moov_last.mp4", 30)  # moov at the end: a cut loses the index
    data = no_index.read_bytes()
    no_index.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable video file"):
        read_video(no_index)
    assert "ERROR opening" not in capfd.readouterr().err  # decord's chatter is silenced


def test_zero_decodable_frames(tmp_path, capfd):
    path = _make_video(tmp_path / "zeroed.mp4", 10, container_options={"movflags": "+faststart"})
    data = bytearray(path.read_bytes())
    payload = data.find(b"mdat") + 4
    data[payload:] = bytes(len(data) - payload)  # the index is intact, every frame's data is zeros
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="no decodable frames"):
        read_video(path)
    err = capfd.readouterr().err
    assert "NAL" not in err and "DECORD" not in err.upper()


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


def _smooth_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([(x * 4 + i * 8) % 256, (y * 4) % 256, np.full_like(x, 128)], -1) for i in range(num_frames)]
    return np.stack(frames).astype(np.uint8)


def test_write_round_trip_exact_fps_h264_yuv420p(tmp_path):
    frames = _smooth_frames(6, 32, 48)
    out = write_video(tmp_path / "out.mp4", frames, Fraction(30000, 1001))
    assert out == tmp_path / "out.mp4"
    info = _streams(out)["video"]
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["rate"] == Fraction(30000, 1001) and info["frames"] == 6
    clip = read_video(out)
    assert clip.fps == Fraction(30000, 1001) and clip.has_audio is False
    assert clip.frames.shape == frames.shape
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3
    # a float fps close to NTSC becomes the exact fraction
    assert read_video(write_video(tmp_path / "f.mp4", frames, 30000 / 1001)).fps == Fraction(30000, 1001)
    assert list(tmp_path.glob(".*tmp*")) == []  # no temporary files left behind


def _textured_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """Moving waves with noise: content on which x264's rate control has real work to do."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([128 + 60 * np.sin((x + 3 * t) / 7) * np.cos(y / 9), 128 + 60 * np.sin((x - 2 * t) / 5 + y / 11),
                        128 + 50 * np.cos((x + y + 4 * t) / 13)], -1) + rng.normal(0, 6, (height, width, 3))
              for t in range(num_frames)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("width", [96, 128])
def test_the_same_frames_always_give_the_same_file(tmp_path, width):
    # 96 px is 6 macroblocks wide, where x264's AVX-512 macroblock tree made 15 of 40 encodes differ
    frames = _textured_frames(8, 96, width)
    files = {write_video(tmp_path / "out.mp4", frames, 30).read_bytes() for _ in range(20)}
    assert len(files) == 1


def test_write_odd_dimensions_pads_to_even(tmp_path):
    frames = _smooth_frames(3, 33, 47)
    out = write_video(tmp_path / "odd.mp4", frames, 12)
    clip = read_video(out)
    assert clip.frames.shape == (3, 34, 48, 3)  # one edge-repeating row and column added
    assert np.abs(clip.frames[:, :33, :47].astype(int) - frames).mean() < 3
    assert np.abs(clip.frames[:, 33].astype(int) - clip.frames[:, 32]).mean() < 6


def test_write_float_tensor_is_clamped(tmp_path):
    tensor = torch.zeros(4, 3, 16, 16)
    tensor[:, 0] = 2.0  # red above 1 -> 255
    tensor[:, 1] = -1.0  # green below 0 -> 0
    tensor[:, 2] = 0.5
    clip = read_video(write_video(tmp_path / "t.mp4", tensor, 8))
    assert clip.frames.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(clip.frames.reshape(-1, 3).mean(0), [255, 0, 128], atol=6)


@pytest.mark.parametrize(
    "frames, fps, kwargs, match",
    [
        (np.zeros((2, 16, 16, 3), np.float32), 10, {}, "uint8"),
        (np.zeros((2, 16, 16), np.uint8), 10, {}, r"\(F, H, W, 3\)"),
        (torch.zeros(2, 16, 16, 3), 10, {}, r"\(F, 3, H, W\)"),
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), 10, {}, "float"),
        (torch.full((2, 3, 16, 16), float("nan")), 10, {}, "NaN"),
        (np.zeros((0, 16, 16, 3), np.uint8), 10, {}, "empty"),
        (np.zeros((2, 16, 16, 3), np.uint8), 0, {}, "fps"),
        (np.zeros((2, 16, 16, 3), np.uint8), float("inf"), {}, "fps"),
        (np.zeros((2, 16, 16, 3), np.uint8), 10, {"crf": 99}, "crf"),
        (np.zeros((2, 16, 16, 3), np.uint8), 10, {"audio_from": "/no/such/file.mp4"}, "file.mp4"),
        (np.zeros((2, 16, 16, 3), np.uint8), 10, {"audio_start": -1, "audio_from": None}, None),
    ],
)
def test_write_rejects_bad_input(tmp_path, frames, fps, kwargs, match):
    target = tmp_path / "out.mp4"
    if match is None:  # audio_start without audio_from is ignored, not an error
        write_video(target, frames, fps, **kwargs)
        assert target.exists()
        return
    with pytest.raises(ValueError, match=match):
        write_video(target, frames, fps, **kwargs)
    assert not target.exists()


def test_write_rejects_bad_output_paths(tmp_path):
    frames = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="out.avi"):
        write_video(tmp_path / "out.avi", frames, 10)
    with pytest.raises(ValueError, match="does not exist"):
        write_video(tmp_path / "missing" / "out.mp4", frames, 10)


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous result")
    real_encode = media_write._encode_video

    def encode_then_crash(output, stream, frames):
        real_encode(output, stream, frames[:2])  # part of the video is already in the temporary file
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(media_write, "_encode_video", encode_then_crash)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_video(target, _smooth_frames(5, 16, 16), 10)
    assert target.read_bytes() == b"previous result"
    fresh = tmp_path / "fresh.mp4"
    with pytest.raises(RuntimeError):
        write_video(fresh, _smooth_frames(5, 16, 16), 10)
    assert not fresh.exists()
    monkeypatch.undo()
    # frames whose shape changes part-way through the sequence: nothing is written
    frames = [np.zeros((16, 16, 3), np.uint8)] * 3 + [np.zeros((16, 18, 3), np.uint8)]
    with pytest.raises(ValueError, match="shape"):
        write_video(target, frames, 10)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# ------------------------------------------------------------------------------------------
# audio
# ------------------------------------------------------------------------------------------


def _tone_frequency(path: Path) -> tuple[float, float, int]:
    """(dominant frequency in Hz, duration in s, sample rate) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)])
        rate = stream.rate
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples)), len(samples) / rate, rate


def test_audio_survives_edit_round_trip(tmp_path):
    source = _make_video(tmp_path / "with_audio.mp4", 20, audio="aac", audio_rate=22050)
    clip = read_video(source)
    assert clip.has_audio
    edited = 255 - clip.frames
    out = write_video(tmp_path / "edited.mp4", edited, clip.fps, audio_from=clip)
    info = _streams(out)
    assert info["audio"]["codec"] == "aac" and info["audio"]["rate"] == 22050
    assert info["audio"]["duration"] == pytest.approx(2.0, abs=0.1)
    frequency, _, _ = _tone_frequency(out)
    assert frequency == pytest.approx(440, abs=10)
    assert read_video(out).has_audio

    # a section of the clip takes the matching section of the sound
    part = read_video(source, start=0.5, max_frames=8)
    out = write_video(tmp_path / "part.mp4", part.frames, part.fps, audio_from=part)
    assert _streams(out)["audio"]["duration"] == pytest.approx(0.8, abs=0.1)
    # explicit path + audio_start works the same way
    out = write_video(tmp_path / "part2.mp4", part.frames, part.fps, audio_from=source, audio_start=0.5)
    assert _streams(out)["audio"]["duration"] == pytest.approx(0.8, abs=0.1)
    with pytest.raises(ValueError, match="audio_start"):
        write_video(tmp_path / "late.mp4", part.frames, part.fps, audio_from=source, audio_start=30)


def test_non_aac_audio_is_reencoded_to_aac(tmp_path):
    source = _make_video(tmp_path / "pcm.mkv", 10, audio="pcm_s16le", audio_rate=16000)
    out = write_video(tmp_path / "out.mp4", _smooth_frames(10, 48, 64), 10, audio_from=source)
    info = _streams(out)
    assert info["audio"]["codec"] == "aac"
    frequency, duration, rate = _tone_frequency(out)
    assert rate == 16000 and frequency == pytest.approx(440, abs=10)
    assert duration == pytest.approx(1.0, abs=0.15)


def test_clip_without_audio_writes_no_audio(tmp_path, indexed):
    clip = read_video(indexed, max_frames=3)
    out = write_video(tmp_path / "silent.mp4", clip.frames, clip.fps, audio_from=clip)
    assert "audio" not in _streams(out)
    out = write_video(tmp_path / "silent2.mp4", clip.frames, clip.fps, audio_from=indexed)
    assert "audio" not in _streams(out)


def test_real_clip_audio_is_copied(clips_dir, tmp_path):
    clip = read_video(clips_dir / "man-skiing.mp4", start=1.0, max_frames=15, size=64)
    assert clip.has_audio and clip.frames.shape == (15, 64, 64, 3)
    out = write_video(tmp_path / "ski.mp4", clip.frames, clip.fps, audio_from=clip)
    info = _streams(out)
    assert info["video"]["rate"] == Fraction(30000, 1001)
    assert info["audio"]["codec"] == "aac" and info["audio"]["rate"] == 44100
    assert info["audio"]["duration"] == pytest.approx(15 * 1001 / 30000, abs=0.06)


# ------------------------------------------------------------------------------------------
# images and image sequences
# ------------------------------------------------------------------------------------------


def test_read_image_modes_and_errors(tmp_path):
    rgba = Image.new("RGBA", (6, 4), (255, 0, 0, 0))  # fully transparent -> white
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "alpha.png")
    image = read_image(tmp_path / "alpha.png")
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (0, 0, 255) and tuple(image[1, 1]) == (255, 255, 255)

    depth = Image.fromarray(np.full((4, 5), 65535 // 2, np.uint16))  # 16-bit depth render
    depth.save(tmp_path / "depth.png")
    assert np.all(read_image(tmp_path / "depth.png") == 127)

    with pytest.raises(MediaNotFoundError, match="gone.png"):
        read_image(tmp_path / "gone.png")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image file: .*fake.png"):
        read_image(tmp_path / "fake.png")


def test_read_frames_or_images(tmp_path, indexed):
    sequence = tmp_path / "seq"
    sequence.mkdir()
    for i in [1, 2, 10]:  # natural order: 1, 2, 10 (not 1, 10, 2)
        Image.new("RGB", (20, 12), (i * 20, 0, 0)).save(sequence / f"frame{i}.png")
    (sequence / "notes.txt").write_text("ignored")
    frames = read_frames_or_images(sequence)
    assert frames.shape == (3, 12, 20, 3)
    assert list(frames[:, 0, 0, 0]) == [20, 40, 200]
    assert read_frames_or_images(sequence, max_frames=2, size=8).shape == (2, 8, 8, 3)
    assert read_frames_or_images(sequence / "frame2.png").shape == (1, 12, 20, 3)
    assert read_frames_or_images(indexed, max_frames=5).shape == (5, 48, 64, 3)
    # a video's frames are selected as read_video selects them; an image has no timing and ignores that
    assert _indices(read_frames_or_images(indexed, start=1.0, stride=2, max_frames=3)) == [10, 12, 14]
    assert read_frames_or_images(sequence / "frame2.png", start=1.0, stride=2, size=8).shape == (1, 8, 8, 3)

    Image.new("RGB", (21, 12)).save(sequence / "frame11.png")
    with pytest.raises(ValueError, match="frame11.png"):
        read_frames_or_images(sequence)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        read_frames_or_images(empty)
    with pytest.raises(MediaNotFoundError):
        read_frames_or_images(tmp_path / "nothing")


def test_video_clip_properties(indexed):
    clip = read_video(indexed, stride=2, max_frames=5)
    assert isinstance(clip, VideoClip)
    assert (clip.num_frames, clip.height, clip.width) == (5, 48, 64)
    assert clip.duration == pytest.approx(5 / 5)


# ------------------------------------------------------------------------------------------
# memory: bounded by the output size, not by the source resolution times the frame count
# ------------------------------------------------------------------------------------------

# Run in a fresh interpreter: prints the process's peak resident memory in bytes (VmHWM: decoder buffers live
# outside Python, so tracemalloc would not see them; ru_maxrss would also count the pytest process the child
# was forked from), and the size of the frames read from TALL (0 when TALL is "-", the baseline). Both runs
# first read SMALL, so that imports and the decoders' start-up count in the baseline too.
_PEAK_CHILD = """
import re, sys
import gen1.media.read as media_read
from gen1.media import read_video

small, tall, backend = sys.argv[1:4]
if backend == "pyav":
    media_read._read_with_decord = lambda *args: None
read_video(small, size=64)
out = 0 if tall == "-" else read_video(tall, size=64).frames.nbytes
with open("/proc/self/status") as status:
    peak_kib = int(re.search(r"VmHWM:\\s*(\\d+) kB", status.read()).group(1))
print(peak_kib * 1024, out)
"""


def _peak_memory(small: Path, tall: Path | str, backend: str) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(small), str(tall), backend],
                            env=ENV, capture_output=True, text=True, timeout=120, check=True)
    peak, out = result.stdout.split()[-2:]
    return int(peak), int(out)


@pytest.fixture(scope="module")
def tall_clip(tmp_path_factory) -> Path:
    """16 frames of 256 x 4096 (W x H), 3 MiB of RGB each; a few KB of H.264."""
    path = tmp_path_factory.mktemp("tall") / "tall.mp4"
    height, width = 4096, 256
    ramp = np.linspace(0, 255, height)[:, None, None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(16):
            image = np.broadcast_to((ramp + 5 * i) % 256, (height, width, 3)).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.skipif(not Path("/proc/self/status").is_file(),  # CI runs on Linux, where it always runs
                    reason="reads the process's peak memory (VmHWM) from /proc/self/status, which only Linux has")
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_reading_memory_is_bounded_by_the_output_size(indexed, tall_clip, backend):
    """Reading a 4096-pixel-tall clip at size 64 keeps the output (16 frames of 64 x 1024, 3 MiB in all) and
    a few source frames at a time, not a batch of 16 full frames (48 MiB, and more in decord's own pools)."""
    baseline, _ = _peak_memory(indexed, "-", backend)
    peak, output_bytes = _peak_memory(indexed, tall_clip, backend)
    assert output_bytes == 16 * 1024 * 64 * 3
    allowance = 32 * 2**20  # the decoder's reference frames and a few source frames in flight, allocator slack
    grown = peak - baseline
    assert grown <= 4 * output_bytes + allowance, (
        f"reading at size 64 grew the peak by {grown / 2**20:.0f} MiB for {output_bytes / 2**20:.0f} MiB of frames"
    )


def test_to_uint8_frames_is_the_one_conversion():
    images = [Image.new("RGB", (6, 4), (255, 0, 0)), Image.new("L", (6, 4), 128)]
    frames = to_uint8_frames(images)
    assert frames.shape == (2, 4, 6, 3) and frames.dtype == np.uint8
    assert tuple(frames[0, 0, 0]) == (255, 0, 0) and tuple(frames[1, 0, 0]) == (128, 128, 128)
    tensor = torch.tensor([0.0, 0.5, 1.5]).view(1, 3, 1, 1)
    assert tuple(to_uint8_frames(tensor)[0, 0, 0]) == (0, 128, 255)
    with pytest.raises(ValueError, match="uint8"):
        to_uint8_frames(np.zeros((1, 4, 6, 3), np.float32))  # [0, 1] or [0, 255]? not guessed
