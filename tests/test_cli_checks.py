"""The checks the gen1 commands share (gen1.commands._common), and `gen1 eval` / `gen1 customize` refusing bad
arguments in one line before any work."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch

from gen1.cli import main
from gen1.commands._common import refuse_overwriting_inputs, same_file
from gen1.checks import check_number, safetensors_metadata, seed_value


def test_same_file_sees_through_links_and_relative_paths(tmp_path, monkeypatch):
    source = tmp_path / "a.mp4"
    source.write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    monkeypatch.chdir(tmp_path)
    assert same_file("link.mp4", source) and same_file("hard.mp4", source) and same_file("./sub/../a.mp4", source)
    assert not same_file("b.mp4", source)
    with pytest.raises(ValueError, match="--json 'link.mp4' is the same file as --source"):
        refuse_overwriting_inputs({"--json": "link.mp4"}, {"--source": str(source)})
    with pytest.raises(ValueError, match="--compare must differ from -o"):
        refuse_overwriting_inputs({"-o": "new.mp4", "--compare": "./new.mp4"}, {"--reference": []})


def test_numbers_and_seeds():
    check_number("--x", 0.5, low=0, high=1, low_open=True)
    with pytest.raises(ValueError, match=r"--x must be a finite number in \(0, 1\], got inf"):
        check_number("--x", float("inf"), low=0, high=1, low_open=True)
    assert seed_value("42") == 42 and seed_value("1e23") == 10**23
    with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
        seed_value("1.5")


def test_safetensors_metadata_names_truncation(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(100)}, str(path), metadata={"k": "v"})
    assert safetensors_metadata(path) == {"k": "v"}
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated"):
        safetensors_metadata(path)


@pytest.fixture
def videos(tmp_path):
    from gen1.media import write_video

    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "src.mp4", frames, 8)
    write_video(tmp_path / "out.mp4", frames, 8)
    return tmp_path / "src.mp4", tmp_path / "out.mp4"


def test_eval_refuses_a_json_report_over_an_input(videos, capsys):
    source, output = videos
    before = source.read_bytes()
    assert main(["eval", "--source", str(source), "--output", str(output), "--json", str(source)]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "same file as --source" in err and source.read_bytes() == before


def test_eval_names_a_directory_and_the_bundled_content_encoder(videos, capsys):
    from gen1.demo import bundled_model_dir

    source, output = videos
    assert main(["eval", "--source", str(source.parent), "--output", str(output)]) == 2
    assert f"--source '{source.parent}' is a directory" in capsys.readouterr().err
    encoder = bundled_model_dir() / "content_encoder"
    assert main(["eval", "--source", str(source), "--output", str(output), "--clip-model", str(encoder)]) == 2
    err = capsys.readouterr().err
    assert "--clip-model" in err and "is a gen1 content encoder" in err and "Traceback" not in err


def test_eval_reads_the_source_as_an_edit_of_part_of_it_read_it(tmp_path, capsys):
    # an edit with --start/--duration was compared with the source's first frames ("give --max-frames 8"): the
    # wrong frames; eval had no --start/--duration/--fps
    import json

    from gen1.media import write_video

    frames = np.stack([np.full((32, 32, 3), 10 + 15 * i, np.uint8) for i in range(16)])  # frame i: its own grey
    write_video(tmp_path / "src.mp4", frames, 8)
    write_video(tmp_path / "part.mp4", frames[4:12], 8)  # what an edit of --start 0.5 --duration 1 read
    common = ["eval", "--source", str(tmp_path / "src.mp4"), "--output", str(tmp_path / "part.mp4"),
              "--gt", str(tmp_path / "src.mp4")]
    assert main(common) == 2
    assert "give its --start/--duration/--fps" in capsys.readouterr().err
    assert main([*common, "--start", "0.5", "--duration", "1", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["psnr"] > 35  # the same frames compared
    assert main([*common, "--max-frames", "8", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["psnr"] < 20  # the first 8: other frames
    assert main([*common, "--fps", "100"]) == 2
    assert "--fps" in capsys.readouterr().err


def test_eval_threads(videos, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    source, output = videos
    assert main(["eval", "--source", str(source), "--output", str(output), "--threads", "2"]) == 0
    assert calls == [2]


def test_customize_checks_flags_and_model_files_before_loading(tmp_path, capsys):
    import shutil

    from gen1.demo import bundled_model_dir

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16)).save(images / "a.png")  # the images are checked first; the model is what fails here
    common = ["customize", "--images", str(images), "--out", str(tmp_path / "a.safetensors")]
    assert main([*common, "--model", str(bundled_model_dir()), "--lora-rank", "0"]) == 2
    assert "--lora-rank must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main([*common, "--model", str(bundled_model_dir()), "--lr", "-1"]) == 2
    assert "--lr must be a finite number > 0" in capsys.readouterr().err
    model = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), model)
    (model / "unet" / "config.json").write_text("{")
    assert main([*common, "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"--model '{model}'" in err and "unet/config.json' is not valid JSON" in err and "Traceback" not in err
