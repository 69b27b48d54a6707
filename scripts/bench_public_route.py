"""Timing of gen1's public-checkpoint route against diffusers' AnimateDiff ControlNet video-to-video, in one run.

gen1's route (SD-1.5 UNet with AnimateDiff motion modules as its temporal layers, a depth ControlNet fed gen1's
MiDaS depth obscured to t_s, the base's CLIP text encoder) is built at full SD-1.5 size with random weights
(compute does not depend on the weights): the UNet, a default ``MotionAdapter``, a ControlNet of the
``control_v11f1p_sd15_depth`` layout made from the UNet, the SD VAE, a CLIP-L-sized text encoder and a
DPT-Hybrid-sized MiDaS depth estimator at 384 px. The anchor is ``../shared/bench/anchor_animatediff_controlnet.py``
with ``--depth`` (DPT-Hybrid-size depth included) at the same frames, resolution, steps and guidance. Each runs
in a process of its own (so the two never hold their models at once), alternately, and the script prints each
time and the ratio gen1 / anchor (best of ``--repeats`` each). gen1's child also times a second edit of the same clip
with another prompt, its depth read from the depth cache (``ratio_second_edit``): what a user trying prompts waits.

    python scripts/bench_public_route.py                              # CPU: 8 frames, 128x128, 3 steps, fp32, CFG
    python scripts/bench_public_route.py --frames 16 --res 512 --steps 25 --dtype fp16 --compile-anchor   # GPU
    python scripts/bench_public_route.py --tiny --res 32 --repeats 1  # smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
ANCHOR = REPO.parent / "shared" / "bench" / "anchor_animatediff_controlnet.py"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def build_pipeline(tiny: bool, device, dtype):
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    from gen1.depth import DepthEstimator
    from gen1.depth.midas import default_midas_config
    from gen1.pipeline import Gen1Pipeline
    from gen1.unet import VideoUNet

    torch.manual_seed(0)
    if tiny:
        channels = (32, 64)
        unet = UNet2DConditionModel(block_out_channels=channels, layers_per_block=1, cross_attention_dim=32,
                                    norm_num_groups=16, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8,
                                    sample_size=16)
        adapter = MotionAdapter(block_out_channels=channels, motion_layers_per_block=1, motion_num_attention_heads=2,
                                motion_norm_num_groups=16)
        vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=16)
        text = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
        midas = default_midas_config("dpt_hybrid", img_size=64, embed_dim=32, depth=4, num_heads=2,
                                     hooks=(0, 1, 2, 3), features=16, head_channels=8,
                                     reassemble_features=(16, 16, 32, 32), resnet_layers=(1, 1, 1),
                                     resnet_channels=(16, 32, 64), resnet_stem_channels=8, resnet_groups=4)
        depth_size, embedding_channels = (64, 64), (16, 32)
    else:
        unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64)  # SD-1.5 layout
        adapter = MotionAdapter()  # AnimateDiff v1.5 layout
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, sample_size=512)
        text = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        midas = default_midas_config("dpt_hybrid")
        depth_size, embedding_channels = (384, 384), (16, 32, 96, 256)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=embedding_channels)
    video_unet = VideoUNet.from_image_unet_and_motion_adapter(unet, adapter, max_frames=32)
    tokenizer = _byte_tokenizer()
    scheduler = DDIMScheduler(beta_schedule="linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              steps_offset=1)
    depth = DepthEstimator(backend="midas", network_config=midas.to_dict(), input_size=depth_size)
    pipe = Gen1Pipeline(vae=vae, unet=video_unet, scheduler=scheduler, depth_estimator=depth, controlnet=controlnet,
                        text_encoder=CLIPTextModel(text).eval(), tokenizer=tokenizer)
    pipe.cast(dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _byte_tokenizer():
    """A CLIP tokenizer over single bytes (no merges): the real one's cost, with nothing downloaded."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def time_gen1(pipe, frames: int, res: int, steps: int, strength: float, device) -> dict:
    """Seconds of a first edit of a clip (its depth estimated and cached, as every first edit) and of a second edit
    of the same clip with another prompt (its depth read from the cache), in a fresh cache folder; the warm-up
    edits another clip, so that it fills nothing the timed edits read."""
    import tempfile

    from gen1.depth.cache import DepthCache

    rng = np.random.default_rng(0)
    warm_up_video, video = (rng.integers(0, 256, (frames, res, res, 3), dtype=np.uint8) for _ in range(2))

    def edit(clip, num_steps, prompt, cache):
        return pipe(clip, prompt=prompt, guidance_scale=7.5, num_inference_steps=num_steps,
                    strength=strength, generator=torch.Generator(device).manual_seed(0), output_type="np",
                    window_size=frames, window_overlap=0, depth_cache=cache)

    def timed(*args) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        edit(*args)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="gen1-bench-cache-") as folder:
        cache = DepthCache(folder)
        edit(warm_up_video, 2, "a watercolour painting", cache)  # warm-up, as the anchor does
        first = timed(video, steps, "a watercolour painting", cache)
        second = timed(video, steps, "an oil painting", cache)
    return dict(gen1_s=first, gen1_second_s=second)


def time_anchor(args, compile_: bool) -> dict:
    command = [sys.executable, str(ANCHOR), "--frames", str(args.frames), "--res", str(args.res), "--steps",
               str(args.steps), "--strength", str(args.strength), "--depth"]
    if args.tiny:
        command.append("--tiny")
    if compile_:
        command.append("--compile")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def gen1_in_child(args) -> dict:
    """gen1's times (:func:`time_gen1`) from a child process, so that gen1 and the anchor never hold their models at
    once."""
    command = [sys.executable, __file__, "--gen1-only", *model_flags(args), "--frames", str(args.frames),
               "--res", str(args.res), "--steps", str(args.steps), "--strength", str(args.strength)]
    command += ["--threads", str(args.threads)] if args.threads else []
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def add_model_arguments(parser) -> None:
    """The flags of :func:`build_pipeline`'s model (``--tiny``, ``--device``, ``--dtype``), as its children get them
    back from :func:`model_flags`."""
    parser.add_argument("--tiny", action="store_true", help="tiny models: checks the script, not a benchmark")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: fp16 on cuda, fp32 on cpu")


def model_flags(args) -> list[str]:
    """:func:`add_model_arguments`' flags as given, for a child process."""
    flags = ["--device", args.device] + (["--tiny"] if args.tiny else [])
    return flags + (["--dtype", args.dtype] if args.dtype else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2, help="alternate gen1 and anchor runs this many times")
    parser.add_argument("--compile-anchor", action="store_true", help="also time the anchor under torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--gen1-only", action="store_true", help=argparse.SUPPRESS)  # the child's mode
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    if args.gen1_only:
        pipe = build_pipeline(args.tiny, device, dtype)
        print(json.dumps(time_gen1(pipe, args.frames, args.res, args.steps, args.strength, device)))
        return
    ours, seconds, anchors = [], [], []
    for _ in range(args.repeats):
        times = gen1_in_child(args)
        ours.append(times["gen1_s"])
        seconds.append(times["gen1_second_s"])
        anchors.append(time_anchor(args, False)["seconds"])
        print(json.dumps(dict(times, anchor_s=anchors[-1])), flush=True)
    result = dict(system="gen1 public route (AnimateDiff + depth ControlNet) + depth", frames=args.frames,
                  res=args.res, steps=args.steps, strength=args.strength, dtype=str(dtype).replace("torch.", ""),
                  device=device.type, gen1_s=min(ours), anchor_s=min(anchors), ratio=min(ours) / min(anchors),
                  gen1_second_edit_s=min(seconds), ratio_second_edit=min(seconds) / min(anchors))
    if args.compile_anchor:
        compiled = time_anchor(args, True)["seconds"]
        result.update(anchor_compiled_s=compiled, ratio_to_compiled=min(ours) / compiled)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
