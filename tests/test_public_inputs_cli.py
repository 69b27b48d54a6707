"""`gen1 edit` on the public route with reference images (--ip-adapter, --image-encoder, --ip-adapter-scale), and the
adapters that do not fit the base (SDXL ones on an SD-1.5 base, an encoder of another width, none at all) refused in
one line before any model loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gen1.cli import main
from tiny_public import write_ip_adapter, write_public_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from tiny_models import tiny_motion_adapter_config, tiny_motion_unet
    from tiny_pipeline import tiny_pipeline

    root = tmp_path_factory.mktemp("public_inputs")
    parts = write_public_stack(root)
    ip = write_ip_adapter(root / "ip", tiny_motion_unet(seed=0))
    alone = root / "alone" / "ip-adapter_sd15.safetensors"  # no image_encoder/ beside it
    alone.parent.mkdir()
    shutil.copy(ip, alone)
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8,
                                                   projection_dim=16)).save_pretrained(root / "encoder16")
    # SDXL-shaped adapters (their headers / configs are all the checks read): text width 2048, three UNet widths
    sdxl_ip = root / "sdxl_ip" / "ip-adapter_sdxl.safetensors"
    sdxl_ip.parent.mkdir()
    save_file({"image_proj.proj.weight": torch.zeros(8, 24), "ip_adapter.1.to_k_ip.weight": torch.zeros(32, 2048),
               "ip_adapter.1.to_v_ip.weight": torch.zeros(32, 2048)}, str(sdxl_ip))
    shutil.copytree(root / "ip" / "image_encoder", sdxl_ip.parent / "image_encoder")
    save_file({"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.zeros(4, 2048),
               "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.zeros(640, 4)},
              str(root / "sdxl_lora.safetensors"))
    sdxl_motion = root / "sdxl_motion"
    sdxl_motion.mkdir()
    config = dict(tiny_motion_adapter_config(block_out_channels=(320, 640, 1280)), _class_name="MotionAdapter")
    (sdxl_motion / "config.json").write_text(json.dumps(config))
    tiny_pipeline(max_frames=4).save_pretrained(root / "native")
    reference = root / "reference.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(reference)
    return dict(parts, ip=ip, alone=alone, encoder16=root / "encoder16", sdxl_ip=sdxl_ip,
                sdxl_lora=root / "sdxl_lora.safetensors", sdxl_motion=sdxl_motion, native=root / "native",
                reference=reference)


def _parts(stack, motion=None):
    return ["--base", stack["base"], "--motion-adapter", motion or stack["motion_adapter"], "--controlnet",
            stack["controlnet"]]


def _edit(argv, capsys):
    code = main(["edit", *map(str, argv)])
    return code, capsys.readouterr()


def test_reference_images_act_through_the_ip_adapter_by_its_scale(stack, clips_dir, tmp_path, capsys):
    from gen1.media import read_video

    depth = tmp_path / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).save(depth)
    common = [clips_dir / "wolf.mp4", "--prompt", "a fox", *_parts(stack), "--depth", depth, "--size", 32,
              "--max-frames", 2, "--steps", 2]
    outputs = {}
    for name, extra in (("scale 1", ["--ip-adapter-scale", 1]), ("scale 0", ["--ip-adapter-scale", 0]),
                        ("no adapter", None)):
        out = tmp_path / f"{name}.mp4"
        ip = [] if extra is None else ["--reference", stack["reference"], "--ip-adapter", stack["ip"], *extra]
        code, captured = _edit([*common, "-o", out, *ip], capsys)
        assert code == 0, captured.err
        assert (f"applied IP-Adapter {stack['ip']}" in captured.out) == (extra is not None)
        outputs[name] = read_video(out).frames.astype(np.float32)
    assert np.abs(outputs["scale 1"] - outputs["scale 0"]).mean() > 1.0  # the reference changes the edit
    assert np.array_equal(outputs["scale 0"], outputs["no adapter"])  # at scale 0 it does nothing


@pytest.mark.parametrize("argv, message", [
    ([], "the motion adapter '{sdxl_motion}' does not fit the base: motion adapter block_out_channels=[320, 640, "
     "1280] do not match the image UNet's block_out_channels=[32, 64] (an SDXL motion adapter; an SD-1.5 base takes "
     "SD-1.5 modules such as guoyww/animatediff-motion-adapter-v1-5-2)"),
    (["--reference", "{reference}", "--ip-adapter", "{sdxl_ip}"], "--ip-adapter '{sdxl_ip}' does not fit --base "
     "'{base}': the IP-Adapter was made for cross-attention width 2048 (SDXL), the base UNet has 32"),
    (["--lora", "{sdxl_lora}"], "--lora: LoRA '{sdxl_lora}' was made for cross-attention width 2048 (SDXL), the base "
     "UNet has 32"),
    (["--reference", "{reference}", "--ip-adapter", "{alone}"], "the IP-Adapter '{alone}' needs its CLIP image "
     "encoder: none at '{alone_dir}/image_encoder', give --image-encoder"),
    (["--reference", "{reference}", "--ip-adapter", "{ip}", "--image-encoder", "{encoder16}"], "IP-Adapter '{ip}' "
     "takes image embeddings of width 24, the image encoder gives 16 (an encoder for another adapter?)"),
    (["--reference", "{reference}"], "--reference on the public route needs an IP-Adapter: give --ip-adapter"),
    (["--image-encoder", "{encoder16}"], "--image-encoder belongs to --ip-adapter"),
    (["--ip-adapter", "nothere"], "--ip-adapter path not found: 'nothere' (nor is it a Hub repo id ORG/NAME)"),
    (["--ip-adapter", "{ip}", "--ip-adapter-scale", "-1"], "--ip-adapter-scale must be a finite number >= 0, got -1"),
    (["--ip-adapter-scale", "0.5"], "--ip-adapter-scale needs an IP-Adapter: give --ip-adapter; --base '{base}' holds "
     "none"),
])
def test_adapters_that_do_not_fit_are_refused_in_one_line_before_loading(stack, clips_dir, tmp_path, capsys,
                                                                          monkeypatch, argv, message):
    for target in ("gen1.commands.edit.load_model", "gen1.model_sources.load_model"):
        monkeypatch.setattr(target, lambda *args, **kwargs: pytest.fail("loaded a model before refusing"))
    names = {key: str(value) for key, value in stack.items()}
    names["alone_dir"] = str(stack["alone"].parent)
    argv = [a.format(**names) for a in argv]
    parts = _parts(stack, motion=stack["sdxl_motion"] if "sdxl_motion" in message else None)
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--prompt", "x", *parts,
                            "--depth", stack["reference"], *argv], capsys)
    assert code == 2 and message.format(**names) in captured.err, captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1


def test_an_ip_adapter_on_a_native_model_is_refused(stack, clips_dir, tmp_path, capsys):
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--reference", stack["reference"],
                            "--model", stack["native"], "--ip-adapter", stack["ip"]], capsys)
    assert code == 2 and f"--ip-adapter does not apply to --model '{stack['native']}', a native Gen-1 model" \
        in captured.err


def test_a_saved_pipelines_ip_adapter_takes_the_scale_asked_for(stack, clips_dir, tmp_path, capsys):
    from gen1.pipeline import Gen1Pipeline
    from gen1.media import read_video

    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"])
    pipe.load_ip_adapter(stack["ip"])
    pipe.save_pretrained(tmp_path / "model")
    depth = tmp_path / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).save(depth)
    common = [clips_dir / "wolf.mp4", "--prompt", "a fox", "--reference", stack["reference"], "--model",
              tmp_path / "model", "--depth", depth, "--size", 32, "--max-frames", 2, "--steps", 2]
    outputs = {}
    for scale in (None, 0):
        out = tmp_path / f"{scale}.mp4"
        code, captured = _edit([*common, "-o", out, *([] if scale is None else ["--ip-adapter-scale", scale])], capsys)
        assert code == 0, captured.err
        assert ("IP-Adapter scale 0" in captured.out) == (scale == 0)
        outputs[scale] = read_video(out).frames.astype(np.float32)
    assert np.abs(outputs[None] - outputs[0]).mean() > 1.0  # scale 0 switches the saved adapter's references off
