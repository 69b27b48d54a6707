"""`gen1 edit` on the public-checkpoint route: assembled from its parts on the command line or loaded as a saved
pipeline, with audio kept, --compare, user depth, a depth model, and one-line refusals of mismatched parts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gen1.cli import main
from tiny_public import write_foreign_controlnet, write_public_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("public_cli")
    parts = write_public_stack(root, dpt=True)
    depth = root / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).save(depth)
    return dict(parts, depth=depth)


def _parts(stack):
    return ["--base", stack["base"], "--motion-adapter", stack["motion_adapter"], "--controlnet", stack["controlnet"]]


def _edit(argv, capsys):
    code = main(["edit", *map(str, argv)])
    return code, capsys.readouterr()


def test_edit_assembles_the_public_route_keeps_audio_and_writes_the_comparison(stack, clips_dir, tmp_path, capsys):
    from gen1.media import read_video

    out, compare = tmp_path / "out.mp4", tmp_path / "compare.png"
    code, captured = _edit([clips_dir / "man-skiing.mp4", "-o", out, "--prompt", "a red car", *_parts(stack),
                            "--depth-model", stack["dpt"], "--size", 32, "--max-frames", 3, "--steps", 2,
                            "--guidance", 3, "--temporal-guidance", 1.5, "--structure-level", 2,
                            "--controlnet-scale", 0.8, "--negative-prompt", "blurry", "--compare", compare], capsys)
    assert code == 0, captured.err
    clip = read_video(out)
    assert clip.frames.shape == (3, 32, 32, 3) and clip.has_audio
    assert Image.open(compare).size[0] > 32


def test_a_saved_public_pipeline_loads_with_model_and_takes_user_depth(stack, clips_dir, tmp_path, capsys):
    from gen1.pipeline import Gen1Pipeline
    from gen1.media import read_video

    Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                  controlnet=stack["controlnet"]).save_pretrained(tmp_path / "model")
    out = tmp_path / "out.mp4"
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", out, "--prompt", "snow", "--model", tmp_path / "model",
                            "--depth", stack["depth"], "--size", 32, "--max-frames", 2, "--steps", 2], capsys)
    assert code == 0, captured.err
    assert read_video(out).frames.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("argv, message", [
    (["--base", "{base}"], "needs --base, --motion-adapter and --controlnet: --motion-adapter, --controlnet missing"),
    (["--model", "{base}", "--base", "{base}", "--motion-adapter", "{adapter}", "--controlnet", "{controlnet}"],
     "give either --model or --base"),
    (["--base", "{base}", "--motion-adapter", "{adapter}", "--controlnet", "{controlnet}"], "give --depth-model"),
    (["--base", "{base}", "--motion-adapter", "{adapter}", "--controlnet", "{wide}", "--depth", "{depth}"],
     "was made for another base: its cross_attention_dim is 48"),
    (["--depth-model", "{dpt}"], "--depth-model belongs to the public route"),
    (["--negative-prompt", "blurry"], "--negative-prompt does not apply to"),
])
def test_public_route_errors_are_one_line_before_loading(stack, clips_dir, tmp_path, capsys, monkeypatch, argv,
                                                        message):
    wide = write_foreign_controlnet(tmp_path / "wide")
    for target in ("gen1.commands.edit.load_model", "gen1.model_sources.load_model"):
        monkeypatch.setattr(target, lambda *args, **kwargs: pytest.fail("loaded a model before refusing"))
    names = dict(base=stack["base"], adapter=stack["motion_adapter"], controlnet=stack["controlnet"], wide=wide,
                 depth=stack["depth"], dpt=stack["dpt"])
    argv = [str(a).format(**names) for a in argv]
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--prompt", "x", *argv], capsys)
    assert code == 2 and message in captured.err, captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1


def test_compile_compiles_the_unet_and_the_controlnet_in_place(stack, clips_dir, tmp_path, capsys, monkeypatch):
    """--compile on this route hands both per-step networks to torch.compile (compiling itself is a GPU benchmark
    matter; here the calls are recorded and the edit completes)."""
    from diffusers import ControlNetModel

    from gen1.unet import VideoUNet

    compiled = []
    for cls in (VideoUNet, ControlNetModel):
        monkeypatch.setattr(cls, "compile", lambda self, *a, **k: compiled.append(type(self)), raising=False)
    out = tmp_path / "out.mp4"
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", out, "--prompt", "snow", *_parts(stack),
                            "--depth", stack["depth"], "--size", 32, "--max-frames", 2, "--steps", 1, "--compile"],
                           capsys)
    assert code == 0, captured.err
    assert sorted(c.__name__ for c in compiled) == ["ControlNetModel", "VideoUNet"] and out.is_file()
