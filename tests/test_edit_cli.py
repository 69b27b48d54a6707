"""`gen1 edit` end to end on real clips with a tiny saved pipeline (CPU), and its error messages."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from gen1.cli import main
from tiny_pipeline import tiny_pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny-gen1"
    tiny_pipeline(max_frames=4).save_pretrained(path)
    return path


def _edit(*args) -> int:
    return main(["edit", *map(str, args)])


def test_edit_writes_video_with_audio_and_comparison(model_dir, clips_dir, tmp_path):
    from gen1.comparison import LABEL_BAND
    from gen1.media import read_video

    out, compare = tmp_path / "out.mp4", tmp_path / "compare.png"
    with pytest.warns(UserWarning, match="without a prior"):
        code = _edit(clips_dir / "man-skiing.mp4", "-o", out, "--prompt", "a skier at night", "--model", model_dir,
                     "--size", 32, "--max-frames", 3, "--steps", 2, "--structure-level", 3, "--guidance", 3,
                     "--temporal-guidance", 1.2, "--compare", compare, "--seed", 1)
    assert code == 0
    clip = read_video(out)
    assert clip.frames.shape == (3, 32, 32, 3)
    assert clip.fps == Fraction(30000, 1001) and clip.has_audio
    sheet = np.asarray(Image.open(compare))
    # 3 frames as rows; source | depth | output, each 32 px panel shown at 192 px (x6, nearest) under a label band
    assert sheet.shape == (LABEL_BAND + 3 * 192, 3 * 192, 3)
    band, panels = sheet[:LABEL_BAND], sheet[LABEL_BAND:]
    assert (band.max(axis=(0, 2)) > 128).reshape(3, 192).any(axis=1).all()  # light text over each column
    output = panels[:192, 2 * 192:]  # the first frame's output, each pixel a 6x6 block of one colour
    np.testing.assert_array_equal(output, output[::6, ::6].repeat(6, axis=0).repeat(6, axis=1))
    shown, written = output[::6, ::6].astype(float).ravel(), clip.frames[0].astype(float).ravel()
    assert np.corrcoef(shown, written)[0, 1] > 0.6  # the written video's first frame (encoded lossily)


def test_edit_with_reference_mask_depth_and_windows(model_dir, clips_dir, tmp_path):
    from gen1.media import read_video

    reference, mask, depth = tmp_path / "ref.png", tmp_path / "mask.png", tmp_path / "depth.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(reference)
    mask_image = np.zeros((512, 512), np.uint8)
    mask_image[:, 256:] = 255
    Image.fromarray(mask_image).save(mask)  # wolf.mp4 is 512x512: resized like the video
    Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).save(depth)
    out = tmp_path / "out.mp4"
    code = _edit(clips_dir / "wolf.mp4", "-o", out, "--reference", reference, "--model", model_dir, "--size", 16,
                 "--max-frames", 6, "--steps", 2, "--guidance", 1, "--mask", mask, "--depth", depth,
                 "--window", 4, "--overlap", 2, "--fps", 10, "--scheduler", "dpm", "--dtype", "bf16")
    assert code == 0
    clip = read_video(out)
    assert clip.frames.shape == (6, 16, 16, 3) and clip.fps == 10 and not clip.has_audio


@pytest.fixture
def forbid_heavy_work(monkeypatch):
    """Loading the model or decoding a video fails the test: the errors below must come before either."""
    import gen1.media
    from gen1.pipeline import Gen1Pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("heavy work started before the arguments were checked")

    monkeypatch.setattr(Gen1Pipeline, "from_pretrained", forbidden)
    monkeypatch.setattr(gen1.media, "read_video", forbidden)


def _unwritable_directory(tmp_path):
    """A directory in which no new file can be made: root ignores permission bits, but not sysfs's rules."""
    if os.geteuid() == 0:
        return "/sys"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return str(locked)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "{tmp}/nope"], "--model directory not found"),
        (["--model", "{tmp}"], "not a gen1 pipeline directory"),
        (["--model", "{model}", "--mask", "{tmp}/missing.png"], "--mask file not found"),
        (["--model", "{model}", "-o", "{tmp}/no/dir/out.mp4"], "output directory does not exist"),
        (["--model", "{model}", "-o", "{unwritable}/out.mp4"], "-o/--output: cannot write to output directory"),
        (["--model", "{model}", "--compare", "{unwritable}/c.png"], "--compare: cannot write to output directory"),
        (["--model", "{model}", "--structure-level", "9"],
         "--structure-level must be a finite number in [0, 7], got 9"),
        (["--model", "{model}", "--guidance", "-1"], "--guidance must be a finite number >= 0"),
        (["--model", "{model}", "--temporal-guidance", "nan"], "--temporal-guidance must be a finite number"),
        (["--model", "{model}", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["--model", "{model}", "--strength", "0"], "--strength must be a finite number in (0, 1], got 0"),
        (["--model", "{model}", "--strength", "1.5"], "--strength must be a finite number in (0, 1]"),
        (["--model", "{model}", "--seed", "1e23"],
         "--seed must be an integer from 0 to 18446744073709551615, got 1000"),
        (["--model", "{model}", "--seed", "-1"], "--seed must be an integer from 0"),
        (["--model", "{model}", "--size", "30"], "--size (target short side) must be a multiple of 8, got 30"),
        (["--model", "{model}", "--fps", "0"], "--fps must be a finite number > 0"),
        (["--model", "{model}", "--max-frames", "0"], "--max-frames must be an integer >= 1"),
        (["--model", "{model}", "--threads", "0"], "--threads must be an integer >= 1"),
        (["--model", "{model}", "--prompt", ""], "--prompt must not be empty"),
        (["--model", "{model}", "--content-weights", "1", "1"], "--content-weights needs one weight per --prompt"),
        (["--model", "{model}", "-o", "{tmp}/out.avi"], "-o/--output must end in"),
        (["--model", "{model}", "--compare", "{tmp}/c.txt"], "--compare must end in"),
        (["--model", "{model}", "--window", "8"], "--window must be <= 4 (the model's max_frames), got 8"),
        (["--model", "{model}", "--overlap", "4"], "--overlap must be an integer from 0 to 3, got 4"),
    ],
)
def test_edit_errors_are_one_clear_line_before_any_work(model_dir, clips_dir, tmp_path, capsys, forbid_heavy_work,
                                                        extra, message):
    args = ["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "out.mp4"), "--prompt", "x",
            "--size", "16", "--max-frames", "2", "--steps", "1"]
    args += [a.format(tmp=tmp_path, model=model_dir, unwritable=_unwritable_directory(tmp_path)) for a in extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("collision", ["input", "symlink", "mask", "depth", "reference", "compare"])
def test_output_that_is_an_input_is_refused_and_the_input_kept(model_dir, clips_dir, tmp_path, capsys,
                                                                 forbid_heavy_work, collision):
    source, still = tmp_path / "source.mp4", tmp_path / "still.png"
    source.write_bytes((clips_dir / "wolf.mp4").read_bytes())
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(still)
    out = {"input": source, "symlink": tmp_path / "link.mp4", "compare": tmp_path / "out.mp4"}.get(collision, still)
    if collision == "symlink":
        out.symlink_to(source)
    args = ["edit", str(source), "-o", str(out), "--prompt", "x", "--model", str(model_dir)]
    if collision in ("mask", "depth", "reference"):
        still_mp4 = tmp_path / "still.mp4"  # an output name the suffix check accepts, linked to the input image
        still_mp4.symlink_to(still)
        out = still_mp4
        args[3] = str(out)
        args += [f"--{collision}", str(still)]
    if collision == "compare":
        args += ["--compare", str(out)]
    before = {p: p.read_bytes() for p in (source, still)}
    assert main(args) == 2
    err = capsys.readouterr().err
    flag = {"input": "INPUT", "symlink": "INPUT", "compare": "-o/--output"}.get(collision, f"--{collision}")
    assert ("is the same file as " + flag in err or f"must differ from {flag}" in err) and "Traceback" not in err
    assert {p: p.read_bytes() for p in (source, still)} == before


def test_input_that_is_a_directory_or_a_still_image_says_so(tmp_path, capsys, forbid_heavy_work):
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    assert main(["edit", str(tmp_path), "-o", str(tmp_path / "o.mp4"), "--prompt", "x"]) == 2
    assert f"INPUT '{tmp_path}' is a directory" in capsys.readouterr().err
    assert main(["edit", str(image), "-o", str(tmp_path / "o.mp4"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "is a still image; gen1 edit edits videos" in err and "read_image" not in err


def test_read_errors_name_the_flag(model_dir, clips_dir, tmp_path, capsys):
    args = ["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x",
            "--model", str(model_dir), "--size", "16"]
    assert main([*args, "--start", "100"]) == 2
    err = capsys.readouterr().err
    assert "INPUT: --start 100 s is beyond the end" in err and "start=" not in err


def _damaged_copy(model_dir, tmp_path, damage):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    if damage == "truncated weights":
        weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return copy, weights
    config = copy / "vae" / "config.json"
    config.write_text('{"_class_name": "AutoencoderKL", ')
    return copy, config


@pytest.mark.parametrize("damage, message", [("truncated weights", "truncated"), ("bad config", "not valid JSON")])
def test_damaged_model_files_are_named_before_any_work(model_dir, clips_dir, tmp_path, capsys, forbid_heavy_work,
                                                      damage, message):
    damaged, broken_file = _damaged_copy(model_dir, tmp_path, damage)
    assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x",
                 "--model", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert f"--model '{damaged}'" in err and str(broken_file) in err and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"random bytes, not an adapter" * 10, "safetensors"])
def test_a_file_that_is_no_adapter_is_refused_before_any_work(model_dir, clips_dir, tmp_path, capsys,
                                                               forbid_heavy_work, content):
    import torch
    from safetensors.torch import save_file

    adapter = tmp_path / "x.bin"
    if content == "safetensors":  # a valid safetensors file, but without gen1's adapter metadata
        save_file({"w": torch.zeros(2)}, str(adapter))
    else:
        adapter.write_bytes(content)
    assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x",
                 "--model", str(model_dir), "--adapter", str(adapter)]) == 2
    err = capsys.readouterr().err
    assert f"--adapter '{adapter}' is not a gen1 adapter" in err and "Traceback" not in err


def test_without_model_the_bundled_demo_model_edits(clips_dir, tmp_path):
    from gen1.media import read_video

    out, reference = tmp_path / "out.mp4", tmp_path / "style.png"
    Image.fromarray(np.full((64, 64, 3), (200, 30, 30), np.uint8)).save(reference)
    assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(out), "--reference", str(reference), "--size", "64",
                 "--max-frames", "2", "--steps", "2"]) == 0
    assert read_video(out).frames.shape == (2, 64, 64, 3)


def test_missing_bundled_model_is_a_clear_error(clips_dir, tmp_path, capsys, monkeypatch):
    import gen1.demo

    monkeypatch.setattr(gen1.demo, "BUNDLED_SUBDIR", ("assets", "not-installed"))
    args = ["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "out.mp4"), "--prompt", "x"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the bundled demo model is missing" in err and "pass --model" in err and "Traceback" not in err


def test_edit_needs_content_and_an_input(model_dir, tmp_path, capsys):
    assert main(["edit", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x"]) == 2
    assert "INPUT file not found" in capsys.readouterr().err
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    assert main(["edit", str(video), "-o", str(tmp_path / "o.mp4"), "--model", str(model_dir)]) == 2
    assert "give --prompt and/or --reference" in capsys.readouterr().err


def test_edit_applies_a_customisation_adapter(model_dir, clips_dir, tmp_path, capsys):
    import torch

    from gen1.pipeline import Gen1Pipeline
    from gen1.adapters import prepare_adapter, save_adapter
    from gen1.media import read_video

    unet = Gen1Pipeline.from_pretrained(model_dir).unet
    prepare_adapter(unet, rank=2)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    adapter = save_adapter(unet, tmp_path / "adapter.safetensors")
    common = [clips_dir / "car-turn.mp4", "--prompt", "x", "--model", model_dir, "--size", 16, "--max-frames", 2,
              "--steps", 1, "--guidance", 1]
    with pytest.warns(UserWarning):
        assert _edit(*common, "-o", tmp_path / "plain.mp4") == 0
        assert _edit(*common, "-o", tmp_path / "custom.mp4", "--adapter", adapter) == 0
    assert f"applied adapter {adapter} (lora, rank 2, " in capsys.readouterr().out
    plain, custom = read_video(tmp_path / "plain.mp4").frames, read_video(tmp_path / "custom.mp4").frames
    assert plain.shape == custom.shape == (2, 16, 16, 3)
    assert np.abs(plain.astype(int) - custom.astype(int)).mean() > 0.2  # measured 0.87 (uint8 levels)


def test_compile_flag_compiles_the_unet_in_place(model_dir, clips_dir, tmp_path, monkeypatch):
    """--compile hands the pipeline's own VideoUNet to torch.compile (compilation itself is a GPU benchmark
    matter; here the call is recorded and the edit still completes)."""
    from gen1.unet import VideoUNet

    compiled = []
    monkeypatch.setattr(VideoUNet, "compile", lambda self, *a, **k: compiled.append(self), raising=False)
    out = tmp_path / "out.mp4"
    with pytest.warns(UserWarning, match="without a prior"):
        code = _edit(clips_dir / "wolf.mp4", "-o", out, "--prompt", "x", "--model", model_dir, "--size", 16,
                     "--max-frames", 2, "--steps", 1, "--compile")
    assert code == 0 and out.is_file()
    assert len(compiled) == 1 and isinstance(compiled[0], VideoUNet)


class _Stop(Exception):
    """Raised in place of the denoising: the test has seen what the command handed to the pipeline."""


def _pipeline_call(monkeypatch, args) -> dict:
    """Run ``gen1 edit`` up to the pipeline call; return the call's keyword arguments."""
    from gen1.pipeline import Gen1Pipeline

    seen = {}

    def capture(self, video, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(Gen1Pipeline, "__call__", capture)
    with pytest.raises(_Stop):
        main(["edit", *map(str, args)])
    return seen


def test_16_bit_depth_is_read_at_full_precision_and_can_be_inverted(model_dir, clips_dir, tmp_path, monkeypatch):
    """A depth PNG whose ramp spans 256 of the 65536 16-bit levels: cut to 8 bits it would be two levels."""
    depth_png = tmp_path / "distance.png"
    Image.fromarray(np.tile(np.arange(1000, 1256, 4, dtype=np.uint16), (64, 1))).save(depth_png)
    common = [clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--prompt", "x", "--model", model_dir,
              "--size", 16, "--max-frames", 2, "--depth", depth_png]
    depth = _pipeline_call(monkeypatch, common)["depth"]
    assert depth.shape == (1, 1, 16, 16)
    row = depth[0, 0, 8]
    assert len(set(row.tolist())) >= 12 and bool((row.diff() >= 0).all())  # brighter = nearer, kept as is
    inverted = _pipeline_call(monkeypatch, [*common, "--depth-invert"])["depth"][0, 0, 8]
    assert len(set(inverted.tolist())) >= 12 and bool((inverted.diff() <= 0).all())  # far = large: 1/d


def test_a_depth_of_another_aspect_ratio_is_refused_as_a_mask_is(model_dir, clips_dir, tmp_path, monkeypatch,
                                                                  capsys):
    # a 2:1 depth for the square wolf.mp4 was centre-cropped without a word: the structure sat off the frames
    from gen1.media import write_video

    common = [clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--prompt", "x", "--model", model_dir,
              "--size", 16, "--max-frames", 2]
    wide, square = tmp_path / "wide.npy", tmp_path / "square.png"
    np.save(wide, np.random.default_rng(0).random((64, 128)).astype(np.float32))
    write_video(tmp_path / "wide.mp4", np.zeros((2, 64, 128, 3), np.uint8), 8)
    for depth in (wide, tmp_path / "wide.mp4"):
        assert main(["edit", *map(str, common), "--depth", str(depth)]) == 2
        assert "--depth: the depth is 128x64 (WxH) but the video is 512x512: a depth map has the video's shape" in \
            capsys.readouterr().err
    Image.fromarray(np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (96, 1))).save(square)
    assert _pipeline_call(monkeypatch, [*common, "--depth", square])["depth"].shape == (1, 1, 16, 16)  # any size
    # a square map for a 854x480 clip: the edited frames' short-side rounding used to let it pass at 8 px
    assert main(["edit", str(clips_dir / "blackswan.mp4"), *map(str, common[1:]), "--depth", str(square)]) == 2
    assert "the depth is 96x96 (WxH) but the video is 854x480" in capsys.readouterr().err


def test_a_bad_reference_is_one_line_naming_the_flag_before_the_model_loads(clips_dir, tmp_path, capsys,
                                                                             monkeypatch):
    # the pipeline read it after the model loaded: "not a readable image file: 'x.txt'", no flag named; a video
    # given as a reference was taken for a broken image
    loads = []
    monkeypatch.setattr("gen1.model_sources.load_model", lambda *a, **k: loads.append(a))
    (tmp_path / "notes.txt").write_text("not an image")
    for reference, message in [(tmp_path / "notes.txt", "--reference: not a readable image file"),
                               (clips_dir / "wolf.mp4", "is a video; a reference is an image")]:
        assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--reference",
                     str(reference), "--max-frames", "2"]) == 2
        assert message in capsys.readouterr().err
    assert loads == []
    # a GIF is an image to PIL (its first frame) and was read as a reference before the check: it still is
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "look.gif")
    seen = _pipeline_call(monkeypatch, [clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--reference",
                                        tmp_path / "look.gif", "--max-frames", 2])
    assert seen["reference_image"] == [str(tmp_path / "look.gif")]


def test_python_refuses_a_depth_of_another_aspect_ratio_and_takes_the_frames_own():
    import torch

    pipe = tiny_pipeline()
    frames = torch.rand(2, 3, 16, 24)
    with pytest.raises(ValueError, match=r"the depth is 48x16 \(WxH\) but the video is 48x32"):
        pipe.prepare_depth(frames, torch.rand(2, 1, 16, 48), input_size=(32, 48))
    for shape in ((32, 48), (16, 24), (8, 12)):  # the video's shape, the frames' (any size)
        assert pipe.prepare_depth(frames, torch.rand(2, 1, *shape), input_size=(32, 48)).shape == (2, 1, 16, 24)


def test_threads_option_sets_torch_and_opencv_threads(model_dir, clips_dir, tmp_path, monkeypatch):
    import cv2
    import torch

    calls = []
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # 3 threads are allowed whatever this machine has
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("torch", n)))
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: calls.append(("interop", n)))
    monkeypatch.setattr(cv2, "setNumThreads", lambda n: calls.append(("opencv", n)))
    _pipeline_call(monkeypatch, [clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--prompt", "x",
                                 "--model", model_dir, "--size", 16, "--max-frames", 2, "--threads", 3])
    assert set(calls) == {("torch", 3), ("interop", 3), ("opencv", 3)}


def test_ctrl_c_prints_interrupted_exits_130_and_keeps_the_previous_output(model_dir, clips_dir, tmp_path):
    """A real SIGINT while the tiny model denoises (1000 steps, interrupted within the first few)."""
    import signal
    import sys

    from process_helpers import signal_when_logged

    out, log = tmp_path / "out.mp4", tmp_path / "stderr.txt"
    out.write_bytes(b"the previous output")
    command = [sys.executable, "-m", "gen1", "edit", str(clips_dir / "wolf.mp4"), "-o", str(out), "--prompt", "x",
               "--model", str(model_dir), "--size", "64", "--max-frames", "2", "--steps", "1000", "--device", "cpu",
               "--threads", "1"]
    code = signal_when_logged(command, log, "/1000", signal.SIGINT, what="the denoising loop", cwd=tmp_path)
    err = log.read_text(errors="replace")
    assert code == 130, err
    assert "gen1 edit: interrupted" in err and "Traceback" not in err
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "stderr.txt"]  # no temporary file left
