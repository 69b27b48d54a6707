"""The command line's cases of issues 32 and 38: --threads capped at the machine's cores, customize and demo
defaults, --compare with -o as both outputs or neither, eval's frame-count advice, warnings as one clean line."""

from __future__ import annotations

import os
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


def test_threads_above_the_machines_cores_are_capped_with_a_line(capsys):
    import torch

    from gen1.commands._common import apply_threads

    cores = os.cpu_count()
    assert apply_threads(cores * 5000) == cores
    assert torch.get_num_threads() == cores
    assert f"--threads {cores * 5000} is more than this machine's {cores} CPU cores; using {cores}" in \
        capsys.readouterr().err
    assert apply_threads(1) == 1 and capsys.readouterr().err == ""


def test_demo_takes_threads(tmp_path, capsys):
    cores = os.cpu_count()
    assert main(["demo", "--out", str(tmp_path / "demo"), "--steps", "1", "--frames", "2",
                 "--threads", str(cores + 1)]) == 0
    captured = capsys.readouterr()
    assert f"using {cores}" in captured.err and (tmp_path / "demo" / "edited.mp4").is_file()
    assert main(["demo", "--out", str(tmp_path / "x"), "--threads", "0"]) == 2
    assert "--threads must be an integer >= 1, got 0" in capsys.readouterr().err


def test_customize_defaults_to_the_bundled_model(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{index}.png")
    out = tmp_path / "a.safetensors"
    assert main(["customize", "--images", str(tmp_path / "images"), "--out", str(out), "--steps", "1",
                 "--batch-size", "1", "--lora-rank", "1"]) == 0, capsys.readouterr().err
    assert out.is_file() and "trained on 2 images for 1 steps (loss " in capsys.readouterr().out
    # an adapter under another name (a .txt) was written as safetensors; gen1 edit --adapter reads .safetensors
    assert main(["customize", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "a.txt"),
                 "--steps", "1"]) == 2
    assert "--out must end in .safetensors, got" in capsys.readouterr().err and not (tmp_path / "a.txt").exists()


def test_the_customize_summary_tells_the_loss_by_means_of_steps():
    # it compared two single steps (one noise draw each): 0.32 -> 0.14 after 2 steps at a learning rate of 1e-4
    from gen1.commands.customize import loss_summary

    assert loss_summary([0.5]) == "loss 0.5000 -> 0.5000"
    assert loss_summary([0.9, 0.1, 0.5, 0.5, 0.1, 0.3, 0.2, 0.2]) == \
        "mean loss of the first and last 2 steps 0.5000 -> 0.2000"
    assert "last 10 steps" in loss_summary([1.0] * 100)


def test_compare_failing_leaves_no_new_output_and_keeps_an_old_one(model_dir, clips_dir, tmp_path, capsys,
                                                                   monkeypatch):
    import gen1.comparison

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gen1.comparison, "write_comparison", full_disk)
    out, compare = tmp_path / "out.mp4", tmp_path / "compare.png"
    args = ["edit", str(clips_dir / "wolf.mp4"), "-o", str(out), "--compare", str(compare), "--prompt", "x",
            "--model", str(model_dir), "--steps", "1", "--max-frames", "2", "--size", "32"]
    assert main(args) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == []  # neither output, no temporary file
    out.write_bytes(b"the user's earlier edit")
    assert main(args) == 2
    assert out.read_bytes() == b"the user's earlier edit" and sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_eval_frame_count_error_suggests_max_frames(clips_dir, tmp_path, capsys):
    from gen1.media import read_video, write_video

    clip = read_video(clips_dir / "wolf.mp4", max_frames=4, size=32)
    write_video(tmp_path / "source.mp4", clip.frames, clip.fps)
    write_video(tmp_path / "output.mp4", clip.frames[:3], clip.fps)
    assert main(["eval", "--source", str(tmp_path / "source.mp4"), "--output", str(tmp_path / "output.mp4")]) == 2
    err = capsys.readouterr().err
    assert "--source 4, --output 3" in err and "give --max-frames 3" in err and err.count("\n") == 1


def test_warnings_print_as_one_clean_line():
    """As a user sees them: a separate process (pytest records warnings instead of printing them)."""
    import subprocess
    import sys

    script = ("import sys, warnings\n"
              "import gen1.commands.demo as demo\n"
              "from gen1.cli import main\n"
              "demo.run = lambda args: warnings.warn('prompt words this content encoder was not trained on\\n"
              "are read letter by letter', UserWarning) or 0\n"
              "sys.exit(main(['demo']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stderr == "warning: prompt words this content encoder was not trained on are read letter by letter\n"


@pytest.mark.parametrize("flag, message", [
    ("--mask", "--mask is 56x32 but the video is 512x512: a mask has the video's size (or another size of the same "
               "shape)"),
    ("--mask.npy", "--mask is 56x32 but the video is 512x512: a mask has the video's size (or another size of the "
                   "same shape)"),
    ("--depth", "--depth has 3 frames but the edited clip has 2"),
    ("--mask.npy frames", "--mask has 40 frames but the edited clip has 2 (give one mask or one per edited frame)"),
])
def test_mask_and_depth_mismatches_are_reported_before_the_model_loads(model_dir, clips_dir, tmp_path, capsys,
                                                                       monkeypatch, flag, message):
    import gen1.commands.edit

    monkeypatch.setattr(gen1.commands.edit, "load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    if flag == "--mask":
        path = tmp_path / "wide.png"
        Image.fromarray(np.full((32, 56), 255, np.uint8)).save(path)
    elif flag == "--mask.npy":
        flag, path = "--mask", tmp_path / "wide.npy"
        np.save(path, np.ones((32, 56), bool))
    elif flag == "--mask.npy frames":
        flag, path = "--mask", tmp_path / "frames.npy"
        np.save(path, np.eye(32, dtype=bool)[None].repeat(40, axis=0))
    else:
        path = tmp_path / "depth.npy"
        np.save(path, np.zeros((3, 32, 32), np.float32))
    assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x", "--model",
                 str(model_dir), "--size", "32", "--max-frames", "2", flag, str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, line", [
    (["edit", "in.mp4", "-o", "out.mp4", "--imagic-scale", "abc"],
     "gen1 edit: error: argument --imagic-scale: invalid float value: 'abc' (see gen1 edit --help)"),
    (["edit", "in.mp4", "-o", "out.mp4", "--erse"],
     "gen1 edit: error: unrecognized arguments: --erse; did you mean --erase? (see gen1 edit --help)"),
    (["customize", "--out", "a", "--lora-rnk", "3"],
     "gen1 customize: error: unrecognized arguments: --lora-rnk 3; did you mean --lora-rank? (see gen1 customize "
     "--help)"),
    (["--bogus"], "gen1: error: unrecognized arguments: --bogus (see gen1 --help)"),
])
def test_a_mistyped_flag_or_value_is_one_line_naming_the_command(argv, line, capsys):
    # argparse printed its whole usage block (35 lines for gen1 edit) above the error, and the top-level "gen1"
    # for a flag of a sub-command
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("stored", ["bool (H, W)", "uint8 (F, H, W, 1)", "float (F, 1, H, W)", "uint8 0/1 (H, W)",
                                    "int64 0-255 (H, W)"])
def test_a_mask_saved_with_numpy_reads_as_the_same_mask_as_an_image(clips_dir, tmp_path, stored):
    # --mask took images and videos only, though Python takes arrays: a mask saved by np.save (e.g. from a
    # segmentation model) failed as "not a video"
    from gen1.editing import EditRequest, read_inputs

    box = np.zeros((512, 512), bool)
    box[128:320, 192:448] = True
    image = tmp_path / "box.png"
    Image.fromarray(box.astype(np.uint8) * 255).save(image)
    array = {"bool (H, W)": box, "uint8 (F, H, W, 1)": np.stack([box, box])[..., None].astype(np.uint8) * 255,
             "float (F, 1, H, W)": np.stack([box, box])[:, None].astype(np.float32),
             "uint8 0/1 (H, W)": box.astype(np.uint8),  # was divided by 255: 'no white pixel'
             "int64 0-255 (H, W)": box.astype(np.int64) * 255}[stored]
    np.save(tmp_path / "box.npy", array)

    def mask_of(path):
        request = EditRequest(input=str(clips_dir / "wolf.mp4"), output=str(tmp_path / "o.mp4"), prompt=("x",),
                              mask=str(path), size=32, max_frames=2)
        return read_inputs(request).mask

    from_image, from_array = mask_of(image), mask_of(tmp_path / "box.npy")
    assert tuple(from_array.shape) == (1 if array.ndim == 2 else 2, 1, 32, 32)
    assert np.array_equal(np.asarray(from_array[:1] > 0.5), np.asarray(from_image > 0.5))


def test_a_mask_array_that_is_not_numbers_or_is_cut_short_is_refused_naming_it(clips_dir, tmp_path, capsys):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    short = tmp_path / "short.npy"
    np.save(short, np.ones((4, 64, 64), np.float32))
    short.write_bytes(short.read_bytes()[:200])
    np.save(tmp_path / "nan.npy", np.full((64, 64), np.nan, np.float32))
    np.save(tmp_path / "rgba.npy", np.zeros((2, 64, 64, 4), np.uint8))
    np.save(tmp_path / "labels.npy", np.arange(64 * 64).reshape(64, 64) % 301)
    np.save(tmp_path / "f255.npy", np.eye(64, dtype=np.float32) * 255)
    for path, message in ((tmp_path / "objects.npy", "holds object values"),
                          (short, "claims shape (4, 64, 64) of float32"),
                          (tmp_path / "nan.npy", "holds NaN or infinite values"),
                          (tmp_path / "rgba.npy", "has shape (2, 64, 64, 4): 4 channels"),
                          (tmp_path / "labels.npy", "holds integers from 0 to 300; a mask holds 0/1 or 0-255"),
                          (tmp_path / "f255.npy", "holds floats from 0 to 255; a float mask holds 0 (keep) to 1")):
        assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x", "--size",
                     "32", "--max-frames", "2", "--mask", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"mask array '{path}'" in err and message in err and err.count("\n") == 1, err


def test_a_drag_past_the_scale_limit_is_refused_before_the_model_loads(model_dir, clips_dir, tmp_path, capsys,
                                                                     monkeypatch):
    # the vectors alone say the map scales 9x; it was found only after the model, the depth and the tracking ran
    import gen1.commands.edit

    monkeypatch.setattr(gen1.commands.edit, "load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    mask = np.zeros((512, 512), np.uint8)
    mask[200:300, 200:300] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--model", str(model_dir),
                 "--size", "32", "--max-frames", "2", "--mask", str(tmp_path / "mask.png"), "--mask-frame", "0",
                 "--drag", "210,250:210,250", "--drag", "220,250:300,250"]) == 2
    err = capsys.readouterr().err
    assert "--drag 210,250:210,250 220,250:300,250: scales the subject by 9x along one direction" in err, err
    assert err.count("\n") == 1


@pytest.mark.parametrize("size", [64, 112])
def test_a_mask_painted_on_the_edited_frames_is_read_at_any_size(tmp_path, size):
    # the web app offers mask.png at its canvas's size (the 172x96 clip read at 64 is cut to 112x64, enlarged 8x):
    # gen1 edit took it at --size 64 only ("--mask is 896x512 but the video is 172x96" at 112)
    from gen1.editing import EditRequest, read_inputs
    from gen1.media import write_video

    write_video(tmp_path / "wide.mp4", np.full((2, 96, 172, 3), 90, np.uint8), 8)
    canvas = np.zeros((512, 896), np.uint8)
    canvas[:, :448] = 255  # the left half of the frames as edited
    Image.fromarray(canvas).save(tmp_path / "mask.png")
    request = EditRequest(input=str(tmp_path / "wide.mp4"), output=str(tmp_path / "o.mp4"), prompt=("x",),
                          mask=str(tmp_path / "mask.png"), size=size)
    region = read_inputs(request).mask[0, 0] > 0.5
    width = region.shape[1]
    # (the edge columns that the cut at 64 px took off are not in the painting)
    assert bool(region[:, 3:width // 2 - 2].all()) and not bool(region[:, width // 2 + 2:].any())
    # a square mask is no shape of this clip's frames: at 8 px its frames were 8x8, so 64x64 passed as that x8
    Image.fromarray(canvas[:64, :64]).save(tmp_path / "square.png")
    with pytest.raises(ValueError, match="--mask is 64x64 but the video is 172x96"):
        read_inputs(EditRequest(input=str(tmp_path / "wide.mp4"), output=str(tmp_path / "o.mp4"), prompt=("x",),
                                mask=str(tmp_path / "square.png"), size=size))


@pytest.mark.parametrize("flags, message", [
    (["--depth-invert"], "--depth-invert needs a depth: give --depth (the distance map it reads as depth)"),
    (["--lora-scale", "0.5"], "--lora-scale needs a LoRA: give --lora (the LoRA it scales)"),
])
def test_a_flag_that_qualifies_another_is_refused_without_it(model_dir, clips_dir, tmp_path, capsys, monkeypatch,
                                                             flags, message):
    # both were taken and ignored: the edit ran and wrote its output as if they were not there
    import gen1.commands.edit

    monkeypatch.setattr(gen1.commands.edit, "load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x", "--model",
                 str(model_dir), "--max-frames", "2", *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"gen1 edit: error: {message}\n"
