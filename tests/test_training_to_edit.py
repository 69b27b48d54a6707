"""From `gen1 train` to `gen1 edit`: the training export is a pipeline folder that `gen1 edit --model` loads, with
the training data's size as its default; a folder that is no pipeline, or an export without a component, is an
error that names the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny_pipeline import tiny_depth_estimator
from training_helpers import make_encoder, make_media, make_sd_dir, moving_square, tiny_content_encoder

from gen1.cli import main
from gen1.training.config import load_config
from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess
from gen1.training.trainer import train

SIZE = 32


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A tiny SD folder with a content encoder beside it, a depth estimator folder, a source clip and a reference."""
    from gen1.media import write_video

    root = tmp_path_factory.mktemp("to_edit")
    sd = make_sd_dir(root / "sd")
    tiny_content_encoder().save_pretrained(root / "content")
    tiny_depth_estimator().save_pretrained(root / "depth")
    write_video(root / "input.mp4", moving_square(4, 48, seed=3), fps=8)
    Image.fromarray(moving_square(1, 40, seed=4)[0]).save(root / "style.png")
    return root, sd


def _train(out: Path, base: Path, **extra) -> str:
    items = {"model.base": str(base), "train.output_dir": str(out), "train.max_steps": 1, "model.trainable": "all",
             "model.max_frames": 4, "model.temporal": "{temporal_attention_head_dim: 8}", "train.tensorboard": "false"}
    items.update({k: str(v) for k, v in extra.items()})
    return train(load_config(None, [f"{k}={v}" for k, v in items.items()])).export_dir


def _edit(*args) -> int:
    return main(["edit", *map(str, args)])


def test_gen1_edit_loads_a_training_export_at_the_size_it_was_trained_at(parts, tmp_path, capsys):
    root, sd = parts
    export = _train(tmp_path / "run", sd, **{
        "data.source": "synthetic", "data.synthetic.size": SIZE, "data.synthetic.frames": 4,
        "data.synthetic.num_scenes": 4, "model.content_encoder": root / "content", "model.depth_estimator": root / "depth"})
    index = json.loads((Path(export) / "model_index.json").read_text())
    assert index["trained_size"] == SIZE and index["recommended_guidance_scale"] is None
    assert {name for name in ("vae", "unet", "scheduler", "content_encoder", "depth_estimator") if index[name][0]} == {
        "vae", "unet", "scheduler", "content_encoder", "depth_estimator"}
    capsys.readouterr()

    out = tmp_path / "out.mp4"
    assert _edit(root / "input.mp4", "-o", out, "--reference", root / "style.png", "--model", export,
                 "--steps", 2) == 0
    assert "defaults: --size 32 (the model's trained size), --guidance 7.5" in capsys.readouterr().out
    from gen1.media import read_video

    assert read_video(out).frames.shape == (4, SIZE, SIZE, 3)  # the 48 px source at the trained size

    # the run folder instead of its export: the error names the export
    assert _edit(root / "input.mp4", "-o", tmp_path / "o2.mp4", "--reference", root / "style.png",
                 "--model", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "no model_index.json" in err and f"give its export, '{tmp_path / 'run' / 'export'}'" in err
    # an export's unet/ folder: the error names the pipeline folder above it
    assert _edit(root / "input.mp4", "-o", tmp_path / "o2.mp4", "--reference", root / "style.png",
                 "--model", Path(export) / "unet") == 2
    assert f"it is the UNet of a pipeline: give the pipeline folder, '{export}'" in capsys.readouterr().err


def test_an_export_without_a_component_says_how_to_add_it_and_a_rerun_adds_it(parts, tmp_path, capsys):
    """Shards made from an SD folder that holds neither a content encoder nor a depth estimator: the export is a
    pipeline without them, `gen1 edit` says which config keys add them, and resuming the finished run with those
    keys re-exports a pipeline that edits."""
    root, sd = parts
    media = make_media(tmp_path / "media", videos=2, images=0, frames=4, size=SIZE)
    shards = tmp_path / "shards"
    preprocess(list_inputs(media), shards, make_encoder(sd), PreprocessSettings(clip_length=4, stride=1, size=SIZE))
    run = tmp_path / "run"
    export = _train(run, sd, **{"data.shards": shards, "train.checkpoint_every": 1})
    printed = capsys.readouterr().out
    assert "export: no content encoder" in printed and "model.content_encoder=PATH" in printed
    assert "export: no depth estimator" in printed and "model.depth_estimator=PATH" in printed
    index = json.loads((Path(export) / "model_index.json").read_text())
    assert index["trained_size"] == SIZE and index["content_encoder"][0] is None and index["depth_estimator"][0] is None

    edit = [root / "input.mp4", "-o", tmp_path / "out.mp4", "--reference", root / "style.png", "--model", export,
            "--steps", 1]
    assert _edit(*edit) == 2
    err = capsys.readouterr().err
    assert "has no content encoder" in err and "model.content_encoder=PATH" in err and "train.resume=latest" in err

    _train(run, sd, **{"data.shards": shards, "train.checkpoint_every": 1, "train.resume": "latest",
                       "model.content_encoder": root / "content"})
    assert _edit(*edit) == 2
    err = capsys.readouterr().err
    assert "has no depth estimator: give your own structure with --depth" in err and "model.depth_estimator" in err
    depth = tmp_path / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, SIZE, dtype=np.uint8), (SIZE, 1))).save(depth)
    assert _edit(*edit, "--depth", depth) == 0  # with the user's own structure it edits
