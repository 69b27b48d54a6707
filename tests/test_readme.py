"""README.md as a first user runs it: every Python block executes as written, and every `gen1 edit` command of
"The command" runs, in a folder where each name they use is a tiny random checkpoint in its real layout
(PIPELINE_DIR a saved pipeline, sd-dir a Stable Diffusion folder in diffusers layout, temporal.safetensors from
VideoUNet.save_new_layers, dpt-large a transformers DPT folder, clip-dir a transformers CLIP folder) or a
small media file. docs/demo.md lists exactly the bundled model's words."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gen1.comparison import LABEL_BAND
from tiny_pipeline import tiny_pipeline
from tiny_structure_content import TINY_DIM, save_tiny_clip_checkpoint, tiny_dpt_config
from training_helpers import make_sd_dir, moving_square

from gen1.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
FRAMES, SIZE = 2, 48  # a short clip: the README's commands run 30 steps


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _commands(block: str) -> list[list[str]]:
    """The commands of a bash block, continuation lines joined and comments dropped."""
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding every file and checkpoint README.md names, tiny and in its real layout."""
    from transformers import DPTForDepthEstimation, DPTImageProcessor

    from gen1.pipeline import Gen1Pipeline
    from gen1.unet import VideoUNet
    from gen1.media import write_video

    root = tmp_path_factory.mktemp("readme")
    tiny = tiny_pipeline(max_frames=4)
    Gen1Pipeline(**tiny.components, trained_size=32).save_pretrained(root / "PIPELINE_DIR")
    sd = make_sd_dir(root / "sd-dir")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        trained = VideoUNet.from_image_unet(str(sd), subfolder="unet", content_dim=TINY_DIM)  # from_stable_diffusion's
        with torch.no_grad():  # defaults; "trained": the new layers are not at their zero start
            for name, param in trained.named_parameters():
                if trained._is_new_key(name):
                    param.normal_(0.0, 0.05)
        DPTForDepthEstimation(tiny_dpt_config()).save_pretrained(root / "dpt-large")
    # Intel/dpt-large's layout, at the tiny network's own 32 px (the real one says 384)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "dpt-large")
    trained.save_new_layers(root / "temporal.safetensors")
    save_tiny_clip_checkpoint(root / "clip-dir")
    for name, seed in (("input.mp4", 0), ("render.mp4", 1)):
        write_video(root / name, moving_square(FRAMES, SIZE, seed=seed), fps=8)
    depth = np.repeat(np.linspace(0, 255, SIZE, dtype=np.uint8)[None, :, None], SIZE, axis=0)
    write_video(root / "render_depth.mp4", np.repeat(np.broadcast_to(depth, (FRAMES, SIZE, SIZE, 1)), 3, axis=3), fps=8)
    for name, seed in (("style.png", 2), ("look.png", 3)):
        Image.fromarray(moving_square(1, 40, seed=seed)[0]).save(root / name)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, SIZE // 2:] = 255
    Image.fromarray(mask).save(root / "subject.png")
    return root, trained


def test_every_python_block_of_the_readme_runs_as_written(workdir, monkeypatch):
    root, trained = workdir
    blocks = _blocks(README, "python")
    assert len(blocks) == 2 and "from_pretrained(\"PIPELINE_DIR\")" in blocks[0] and "from_stable_diffusion" in blocks[1]
    monkeypatch.chdir(root)
    results = []
    for block in blocks:
        scope: dict = {}
        with pytest.warns(UserWarning) if "prompt=" in block else _no_context():  # tiny CLIP: no prior
            exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 -- the README's own code
        results.append(scope)
    frames = results[0]["frames"]
    assert frames.shape == (FRAMES, 32, 32, 3) and 0 <= frames.min() and frames.max() <= 1  # PIPELINE_DIR's size
    from gen1.media import read_video

    written, source = read_video(root / "edited.mp4"), read_video(root / "input.mp4")
    assert written.num_frames == FRAMES and written.fps == source.fps  # the frames written as a video
    pipe = results[1]["pipe"]  # sd-dir + temporal.safetensors + dpt-large + clip-dir, as the snippet names them
    for key, value in trained.state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[key], value), key
    assert pipe.depth_estimator.config.backend == "dpt" and pipe.content_encoder.embedding_dim == TINY_DIM
    assert results[1]["out"].frames.shape == (FRAMES, 32, 32, 3)  # the SD base's size: 16 latent cells x 2
    assert (root / "my-gen1-model" / "model_index.json").is_file()


class _no_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_readme_edit_commands_run_and_the_first_uses_the_bundled_model_at_64_px(workdir, monkeypatch, capsys):
    from gen1.media import read_video

    root, _ = workdir
    section = README.split("### The command", 1)[1].split("###", 1)[0]
    (block,) = _blocks(section, "bash")
    commands = _commands(block)
    assert len(commands) == 4 and all(c[:2] == ["gen1", "edit"] for c in commands)
    assert "--model" not in commands[0]  # the first example is the bundled model's
    monkeypatch.chdir(root)
    for command in commands:
        assert main(command[1:]) == 0, command
    out = capsys.readouterr().out
    assert "defaults: --size 64 (the model's trained size), --guidance 1 (the model's)" in out
    # side_by_side.png from the first command (the bundled model, 64 px), shot.mp4 from the last (PIPELINE_DIR, 32 px)
    assert read_video(root / "shot.mp4").frames.shape == (FRAMES, 32, 32, 3)
    assert Image.open(root / "side_by_side.png").size == (3 * 192, LABEL_BAND + FRAMES * 192)  # 64 px shown x3


def test_docs_demo_lists_the_bundled_models_words():
    from gen1.synthetic import CAPTION_VOCABULARY

    text = (REPO / "docs" / "demo.md").read_text(encoding="utf-8")
    table = text.split("**Its words.**", 1)[1].split("\n\n", 2)[1]
    listed = {w for row in table.splitlines()[2:] for w in re.findall(r"[a-z]+", row.split("|")[2])}
    assert listed == set(CAPTION_VOCABULARY)
    public = README.split("### Real videos with public weights", 1)[1].split("###", 1)[0]  # a CLIP text encoder's
    for prompt in re.findall(r'--prompt "([^"]+)"', README.replace(public, "") + text):  # the bundled model's words
        assert set(re.findall(r"[a-z]+", prompt.lower())) <= set(CAPTION_VOCABULARY), prompt
