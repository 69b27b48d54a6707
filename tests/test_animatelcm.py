"""AnimateLCM as a model set on the public route: its motion adapter, its LCM LoRA (kohya layout, every layer the
LCM-LoRA recipe adapts) and LCMScheduler, loaded by Hub name, equal to diffusers' AnimateDiff ControlNet
video-to-video pipeline with the same parts (tiny random weights in the real layouts, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_hub import cache_repo, offline_cache
from tiny_models import tiny_motion_adapter, tiny_motion_unet
from tiny_public import diffusers_video_pipeline, write_public_stack

FRAMES, SIZE = 4, 32
REPO = "wangfuyun/AnimateLCM"
LORA_NAME = "AnimateLCM_sd15_t2v_lora.safetensors"
#: the layers the LCM-LoRA recipe adapts in an SD-1.5 UNet (diffusers' train_lcm_distill_lora_sd_wds.py): attention,
#: transformer projections and feed-forward, and the convolutions and time projections of every ResNet block
LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                    "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]


def write_lcm_lora(path, *, rank: int = 4, alpha: float = 2.0, seed: int = 13):
    """An LCM LoRA for the tiny base UNet in the kohya layout AnimateLCM ships (``lora_unet_<module>.lora_down`` /
    ``lora_up`` / ``alpha``)."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    unet = tiny_motion_unet(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LCM_LORA_TARGETS, init_lora_weights=False))
    peft_state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    kohya = convert_state_dict_to_kohya(peft_state)
    kohya = {k: (torch.tensor(alpha) if k.endswith(".alpha") else v.contiguous()) for k, v in kohya.items()}
    assert any("resnets" in k and "conv1" in k for k in kohya) and all(k.startswith("lora_unet_") for k in kohya)
    save_file(kohya, str(path))
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The public stack (base, depth ControlNet) and a tiny ``wangfuyun/AnimateLCM`` repo: a MotionAdapter at its
    root (config.json + diffusion_pytorch_model.safetensors, max 32 frames, no mid-block module) and the LoRA file."""
    root = tmp_path_factory.mktemp("animatelcm")
    stack = write_public_stack(root)
    repo = root / "AnimateLCM"
    tiny_motion_adapter(seed=21, motion_max_seq_length=32, use_motion_mid_block=False).save_pretrained(repo)
    write_lcm_lora(repo / LORA_NAME)
    return dict(stack, repo=repo)


def _lcm_scheduler(base):
    """What AnimateLCM's authors and diffusers' docs use: the base's scheduler config, linear betas, on LCM."""
    from diffusers import LCMScheduler

    return LCMScheduler.from_pretrained(base, subfolder="scheduler", beta_schedule="linear")


def _video(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)


def _depth(seed=1):
    levels = np.random.default_rng(seed).integers(0, 256, (FRAMES, 1, SIZE, SIZE), dtype=np.uint8)
    return torch.from_numpy(levels).float() / 255.0


def _gen(seed=7):
    return torch.Generator().manual_seed(seed)


def _offline_hub(hub, monkeypatch, tmp_path):
    """The AnimateLCM repo in a Hugging Face cache of this test's own, the Hub unreachable."""
    cache_repo(offline_cache(monkeypatch, tmp_path), REPO, {"": hub["repo"]})


def _gen1_set(hub, *, lora_scale: float):
    """gen1's AnimateLCM set, the motion adapter and the LoRA by Hub name (from the cache)."""
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_animatediff(hub["base"], motion_adapter=REPO, controlnet=hub["controlnet"],
                                         scheduler=_lcm_scheduler(hub["base"]))
    targets = pipe.load_lora_weights(f"{REPO}/{LORA_NAME}", scale=lora_scale)
    pipe.set_progress_bar_config(disable=True)
    return pipe, targets


def _diffusers_set(hub, pipe, *, lora_scale: float):
    reference = diffusers_video_pipeline(pipe, base=hub["base"], motion_adapter=hub["repo"],
                                         controlnet=hub["controlnet"], scheduler=_lcm_scheduler(hub["base"]))
    reference.load_lora_weights(str(hub["repo"]), weight_name=LORA_NAME, adapter_name="lcm-lora")
    reference.set_adapters(["lcm-lora"], [lora_scale])
    return reference


@pytest.mark.parametrize("guidance", [1.0, 2.0], ids=["no-cfg", "cfg-2"])
def test_animatelcm_set_equals_diffusers_animatediff_controlnet_video_to_video(hub, monkeypatch, tmp_path, guidance):
    from diffusers import LCMScheduler

    _offline_hub(hub, monkeypatch, tmp_path)
    pipe, targets = _gen1_set(hub, lora_scale=0.8)
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.scheduler.config.beta_schedule == "linear"
    assert pipe.unet.max_frames >= 16  # the adapter's 32-frame position table, not the v2 default of 8
    assert any(".resnets." in t and t.endswith("conv1") for t in targets)  # the LoRA's convolutions are applied too
    assert any(t.endswith("attn2.to_k") for t in targets)  # kohya's attention names, as the modules peft adapts
    reference = _diffusers_set(hub, pipe, lora_scale=0.8)
    video, depth = _video(), _depth()
    settings = dict(prompt="a red car", strength=0.75, num_inference_steps=4, guidance_scale=guidance,
                    output_type="pt", decode_chunk_size=8)
    depth_images = [Image.fromarray((d[0].numpy() * 255).round().astype(np.uint8)).convert("RGB") for d in depth]
    expected = reference(video=[Image.fromarray(f) for f in video], generator=_gen(), height=SIZE, width=SIZE,
                         conditioning_frames=depth_images, **settings).frames[0]
    out = pipe(video, depth=depth, generator=_gen(), temporal_guidance_scale=1.0, structure_level=0.0,
               **settings).frames
    assert out.shape == expected.shape == (FRAMES, 3, SIZE, SIZE)
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-4)
    if guidance != 1.0:
        return
    # not trivially equal: the LoRA changes the result
    without_lora = _gen1_set(hub, lora_scale=0.0)[0]
    plain = without_lora(video, depth=depth, generator=_gen(), **settings).frames
    assert (out - plain).abs().mean() > 1e-3


def test_a_fused_set_saves_and_loads_as_a_plain_model(hub, monkeypatch, tmp_path):
    from gen1.adapters import fuse_lora_weights
    from gen1.pipeline import Gen1Pipeline

    _offline_hub(hub, monkeypatch, tmp_path)
    pipe, targets = _gen1_set(hub, lora_scale=0.8)
    settings = dict(prompt="a red car", strength=0.75, num_inference_steps=2, guidance_scale=1.5, depth=_depth(),
                    output_type="pt")
    unfused = pipe(_video(), generator=_gen(), **settings).frames
    assert sorted(fuse_lora_weights(pipe)) == sorted(targets)
    fused = pipe(_video(), generator=_gen(), **settings).frames
    torch.testing.assert_close(fused, unfused, rtol=0, atol=1e-5)
    pipe.save_pretrained(tmp_path / "animatelcm-set")
    loaded = Gen1Pipeline.from_pretrained(str(tmp_path / "animatelcm-set"))
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler).__name__ == "LCMScheduler"
    torch.testing.assert_close(loaded(_video(), generator=_gen(), **settings).frames, fused, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no LoRA"):
        fuse_lora_weights(loaded)
