"""gen1 customize on the public route: a LoRA of the image UNet trained on a few images given an instance prompt,
their depth through the ControlNet, in image mode; it changes the edit and survives saving and loading exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gen1.cli import main
from tiny_public import public_pipeline, write_public_stack
from training_helpers import make_media

PROMPT = "a photo of sks dog"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from tiny_pipeline import tiny_pipeline

    root = tmp_path_factory.mktemp("customize_public")
    parts = write_public_stack(root, dpt=True)
    images = make_media(root / "images", videos=0, images=3, size=32)
    tiny_pipeline(max_frames=4).save_pretrained(root / "native")
    return dict(parts, images=images, native=root / "native")


def _pipe(stack):
    return public_pipeline(stack, depth_estimator=stack["dpt"])


def _edit(pipe):
    video = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    return pipe(video, prompt=f"{PROMPT} running", num_inference_steps=2, guidance_scale=3.0,
                generator=torch.Generator().manual_seed(0), output_type="pt").frames


def test_the_public_lora_trains_in_image_mode_changes_the_edit_and_round_trips(stack, tmp_path, monkeypatch):
    from diffusers import DDPMScheduler

    from gen1.adapters import load_adapter, save_adapter
    from gen1.training.customize import CustomizeSettings, controlnet_image_inputs, encode_public_images, train_adapter
    from gen1.unet import VideoUNet

    pipe = _pipe(stack)
    paths = sorted(stack["images"].glob("*.png"))
    data = encode_public_images(paths, pipe, pipe.depth_estimator, PROMPT, 32)
    assert data["latents"].shape == (3, 4, 1, 16, 16) and data["depth"].shape == (3, 1, 32, 32)
    assert data["content"].shape == data["null_content"].shape == (1, 16, 32)
    assert not torch.equal(data["content"], data["null_content"])
    before = _edit(pipe)
    controlnet = {k: v.clone() for k, v in pipe.controlnet.state_dict().items()}

    calls = []
    forward = VideoUNet.forward

    def spy(self, *args, **kwargs):  # what each training step feeds the UNet
        calls.append({k: kwargs.get(k) is not None for k in ("image_mode", "down_block_additional_residuals",
                                                              "mid_block_additional_residual")}
                     | {"gate": kwargs.get("image_mode")})
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(VideoUNet, "forward", spy)
    settings = CustomizeSettings(steps=3, lr=1e-2, batch_size=2)
    losses = train_adapter(pipe.unet, data, DDPMScheduler.from_config(pipe.scheduler.config), settings,
                           progress=False, draw=controlnet_image_inputs(pipe.controlnet))
    monkeypatch.undo()
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert len(calls) == 3 and all(c["down_block_additional_residuals"] and c["mid_block_additional_residual"]
                                   and c["gate"] is True for c in calls)
    assert all(torch.equal(v, controlnet[k]) for k, v in pipe.controlnet.state_dict().items())  # frozen

    after = _edit(pipe)
    assert (after - before).abs().mean() > 1e-3  # the adapter changes the edit
    path = save_adapter(pipe.unet, tmp_path / "sks.safetensors")
    fresh = _pipe(stack)
    assert torch.equal(_edit(fresh), before)
    load_adapter(fresh, path)
    assert torch.equal(_edit(fresh), after)  # identical after saving and loading


def test_customize_and_edit_with_the_adapter_on_the_command_line(stack, clips_dir, tmp_path, capsys):
    from safetensors import safe_open

    from gen1.media import read_video

    parts = ["--base", stack["base"], "--motion-adapter", stack["motion_adapter"], "--controlnet",
             stack["controlnet"], "--depth-model", stack["dpt"]]
    adapter = tmp_path / "sks.safetensors"
    code = main(["customize", *map(str, parts), "--images", str(stack["images"]), "--prompt", PROMPT,
                 "--out", str(adapter), "--steps", "2", "--size", "32", "--lr", "0.01"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "trained on 3 images for 2 steps" in captured.out
    with safe_open(str(adapter), framework="pt") as handle:
        meta = json.loads(handle.metadata()["gen1_adapter"])
    assert meta["kind"] == "lora" and meta["prompt"] == PROMPT
    assert all(".spatial." in target for target in meta["targets"])  # the image UNet's attention only

    out = tmp_path / "out.mp4"
    code = main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(out), "--prompt", f"{PROMPT} running",
                 *map(str, parts), "--adapter", str(adapter), "--size", "32", "--max-frames", "2", "--steps", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"applied adapter {adapter} (lora, rank 4" in captured.out
    assert read_video(out).frames.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("argv, message", [
    (["--model", "{native}", "--prompt", "sks"], "--prompt does not apply to --model '{native}', a "
     "native Gen-1 model"),
    (["--base", "{base}", "--motion-adapter", "{motion_adapter}", "--controlnet", "{controlnet}"],
     "the public route needs a depth estimator: give --depth-model"),
    (["--base", "{base}", "--motion-adapter", "{motion_adapter}", "--controlnet", "{controlnet}", "--depth-model",
      "{dpt}", "--content-model", "{dpt}"], "--content-model does not apply to"),
    (["--base", "{base}"], "needs --base, --motion-adapter and --controlnet: --motion-adapter, --controlnet missing"),
    (["--prompt", "sks"], "--prompt does not apply to --model"),  # no --model: the bundled (native) demo model
])
def test_customize_refuses_flags_of_the_other_route_in_one_line(stack, tmp_path, capsys, argv, message):
    names = {key: str(value) for key, value in stack.items()}
    code = main(["customize", *[a.format(**names) for a in argv], "--images", str(stack["images"]),
                 "--out", str(tmp_path / "a.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and message.format(**names) in err, err
    assert len(err.strip().splitlines()) == 1
