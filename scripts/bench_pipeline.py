"""End-to-end edit benchmark of ``Gen1Pipeline`` against diffusers' AnimateDiff video-to-video.

Builds the pipeline at full Stable Diffusion size with random weights (compute does not depend on the
weights): an SD-1.5 (or SD-2.1) UNet inflated to a ``VideoUNet`` with one depth channel, the SD VAE, a
DPT-Hybrid-sized MiDaS depth estimator at its native 384 px, and a CLIP-L-sized content embedding given
directly (the content encoder runs once per edit and is not what is being measured). It reports JSON lines:
seconds per video and per frame, peak GPU memory, UNet FLOPs per call, achieved TFLOP/s and the share of
the GPU's peak, over a grid of frame counts, resolutions and guidance modes, and depth frames/s.

With ``--anchor`` it also runs ``../shared/bench/anchor_animatediff.py`` (eager and ``--compile``) in the
same run on the same GPU and prints gen1's time as a ratio of each, at equal settings (same base size,
frames, resolution, steps; CFG only, i.e. w_t = 1).

    python scripts/bench_pipeline.py --anchor                       # the headline comparison (GPU)
    python scripts/bench_pipeline.py --grid                         # frames x resolutions x guidance modes
    python scripts/bench_pipeline.py --check                        # each optimisation vs the fp32 baseline
    python scripts/bench_pipeline.py --tiny --steps 2 --frames 4    # CPU smoke test of the script
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
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from gen1.content import ContentEncoder
from gen1.depth import DepthEstimator
from gen1.depth.midas import default_midas_config
from gen1.pipeline import Gen1Pipeline
from gen1.unet import VideoUNet

REPO = Path(__file__).resolve().parents[1]
ANCHOR = REPO.parent / "shared" / "bench" / "anchor_animatediff.py"
# Dense bf16/fp16 matmul throughput reachable on the GPUs this project is measured on (issue 8): ~790 TFLOP/s.
PEAK_TFLOPS = {"H100": 790.0, "H200": 790.0}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

UNET_CONFIGS = {
    "sd15": dict(cross_attention_dim=768, sample_size=64),
    "sd21": dict(cross_attention_dim=1024, sample_size=96, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True),
    "tiny": dict(
        block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, norm_num_groups=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8, sample_size=16,
    ),
}
VAE_CONFIGS = {
    "full": dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, sample_size=512),
    "tiny": dict(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=16),
}


def build_content_encoder(tiny: bool, dim: int) -> ContentEncoder:
    """CLIP ViT-L/14-sized (the default config) or tiny; its output width is the UNet's content width."""
    if not tiny:
        return ContentEncoder(projection_dim=dim)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    return ContentEncoder(vision_config=dict(small, patch_size=8, image_size=32), text_config=small,
                          projection_dim=dim, image_size=32, crop_size=32)


def build_pipeline(base: str, tiny: bool, max_frames: int, device, dtype) -> Gen1Pipeline:
    unet = VideoUNet.from_image_unet(UNet2DConditionModel(**UNET_CONFIGS[base]), structure_channels=1, max_frames=max_frames)
    vae = AutoencoderKL(**VAE_CONFIGS["tiny" if tiny else "full"])
    tiny_midas = dict(img_size=64, embed_dim=32, depth=4, num_heads=2, hooks=(0, 1, 2, 3), features=16, head_channels=8,
                      reassemble_features=(16, 16, 32, 32), resnet_layers=(1, 1, 1), resnet_channels=(16, 32, 64),
                      resnet_stem_channels=8, resnet_groups=4)
    midas = default_midas_config("dpt_hybrid", **(tiny_midas if tiny else {}))
    depth = DepthEstimator(backend="midas", network_config=midas.to_dict(), input_size=(64, 64) if tiny else (384, 384))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = Gen1Pipeline(vae=vae, unet=unet, scheduler=scheduler, depth_estimator=depth,
                        content_encoder=build_content_encoder(tiny, unet.content_dim), prior=None, prior_scheduler=None)
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def apply_optimisations(pipe: Gen1Pipeline, args) -> None:
    if args.channels_last:  # only the 2-D convolutions: temporal layers hold 3-D/5-D weights
        for module in list(pipe.unet.modules()) + list(pipe.vae.modules()):
            if isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    if args.fuse_qkv:
        pipe.unet.unet.fuse_qkv_projections()
    if args.compile:
        pipe.unet = torch.compile(pipe.unet, mode=args.compile_mode, fullgraph=False)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def random_video(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def unet_flops(pipe: Gen1Pipeline, frames: int, height: int, width: int, evaluations: int, device, dtype) -> float:
    """FLOPs of one batched UNet call of ``evaluations`` guidance terms on one window of ``frames`` frames."""
    f = min(frames, pipe.unet.max_frames)
    h, w = height // pipe.vae_scale_factor, width // pipe.vae_scale_factor
    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    sample = torch.randn(evaluations, unet.in_channels, f, h, w, device=device, dtype=dtype)
    context = torch.randn(evaluations, 1, unet.content_dim, device=device, dtype=dtype)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(sample, torch.tensor(500, device=device), encoder_hidden_states=context)
    return counter.get_total_flops()


def time_edit(pipe, args, frames: int, height: int, width: int, temporal_guidance: float, device, dtype) -> dict:
    video = random_video(frames, height, width)
    content = torch.randn(1, pipe.unet.content_dim, generator=torch.Generator().manual_seed(0))

    def edit(steps: int):
        return pipe(video, content_embeds=content, guidance_scale=7.5, temporal_guidance_scale=temporal_guidance,
                    num_inference_steps=steps, generator=torch.Generator(device).manual_seed(0),
                    height=height, width=width, output_type="np", decode_chunk_size=args.decode_chunk)

    start = time.perf_counter()
    edit(2)  # warm-up: cuDNN/cuBLAS autotuning, compilation
    sync(device)
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out = edit(args.steps)
    sync(device)
    seconds = time.perf_counter() - start
    evaluations = 2 if temporal_guidance == 1.0 else 3
    flops = unet_flops(pipe, frames, height, width, evaluations, device, dtype)
    unet_s = time_unet(pipe, frames, height, width, evaluations, device, dtype) if device.type == "cuda" else None
    peak = peak_tflops(device)
    return dict(
        system="gen1 Gen1Pipeline", base="tiny" if args.tiny else args.base, frames=frames, height=height, width=width, steps=args.steps,
        guidance="w" if temporal_guidance == 1.0 else "w+w_t", dtype=args.dtype, compile=args.compile,
        channels_last=args.channels_last, fuse_qkv=args.fuse_qkv, warmup_s=warmup, seconds=seconds,
        s_per_frame=seconds / frames, peak_GiB=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        unet_fwd_TFLOP=flops / 1e12, unet_fwd_s=unet_s, unet_TFLOPs=flops / unet_s / 1e12 if unet_s else None,
        share_of_peak=flops / unet_s / 1e12 / peak if (unet_s and peak) else None,
        out_shape=list(np.asarray(out.frames).shape),
    )


def time_unet(pipe, frames, height, width, evaluations, device, dtype, repeats: int = 5) -> float:
    f = min(frames, getattr(pipe.unet, "_orig_mod", pipe.unet).max_frames)
    h, w = height // pipe.vae_scale_factor, width // pipe.vae_scale_factor
    unet = pipe.unet
    sample = torch.randn(evaluations, pipe.unet.in_channels, f, h, w, device=device, dtype=dtype)
    context = torch.randn(evaluations, 1, pipe.unet.content_dim, device=device, dtype=dtype)
    with torch.no_grad():
        unet(sample, torch.tensor(500, device=device), encoder_hidden_states=context)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            unet(sample, torch.tensor(500, device=device), encoder_hidden_states=context)
        sync(device)
    return (time.perf_counter() - start) / repeats


def time_depth(pipe, frames: int, height: int, width: int, device) -> dict:
    video = torch.from_numpy(random_video(frames, height, width)).permute(0, 3, 1, 2).float().div(255).to(device)
    pipe.depth_estimator.estimate(video[:2])
    sync(device)
    start = time.perf_counter()
    pipe.depth_estimator.estimate(video, batch_size=16)
    sync(device)
    seconds = time.perf_counter() - start
    return dict(system="gen1 depth (DPT-Hybrid size, 384 px)", frames=frames, height=height, width=width,
                seconds=seconds, frames_per_s=frames / seconds)


def run_anchor(args, compile_: bool) -> dict:
    command = [sys.executable, str(ANCHOR), "--frames", "16", "--res", "512", "--steps", str(args.steps)]
    if compile_:
        command.append("--compile")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


CHECK_VARIANTS = (
    dict(name="fp16 eager", dtype="fp16"),
    dict(name="bf16 eager", dtype="bf16"),
    dict(name="fp16 channels-last", dtype="fp16", channels_last=True),
    dict(name="fp16 fused QKV", dtype="fp16", fuse_qkv=True),
    dict(name="fp16 torch.compile", dtype="fp16", compile=True),
)


def check_optimisations(args, device) -> None:
    """Each optimisation against the same pipeline (same seed, same random weights) in fp32 and in plain fp16.

    Prints the largest absolute difference of the output frames (pixels in [0, 1]) against both references.
    The acceptance check of issue 8: every optimisation stays within 2/255 of plain fp16 (i.e. it changes
    the output no more than rounding does) — fp16 itself is compared with fp32 for information.
    """
    frames, (width, height) = args.frames[0], (int(v) for v in args.res[0].lower().split("x"))
    base = "tiny" if args.tiny else args.base

    def edit(variant: dict) -> np.ndarray:
        options = argparse.Namespace(**{**vars(args), "channels_last": False, "fuse_qkv": False, "compile": False, **variant})
        torch.manual_seed(0)  # identical random weights for every variant
        pipe = build_pipeline(base, args.tiny, args.window, device, DTYPES[options.dtype])
        apply_optimisations(pipe, options)
        out = pipe(random_video(frames, height, width), content_embeds=torch.randn(1, pipe.unet.content_dim,
                   generator=torch.Generator().manual_seed(0)), guidance_scale=7.5, num_inference_steps=args.steps,
                   generator=torch.Generator(device).manual_seed(0), height=height, width=width, output_type="np")
        return np.asarray(out.frames, dtype=np.float32)

    reference = edit(dict(name="fp32 eager", dtype="fp32"))
    plain_half = None
    for variant in CHECK_VARIANTS:
        frames_out = edit(variant)
        if variant["name"] == "fp16 eager":
            plain_half = frames_out
        against_half = float(np.abs(frames_out - plain_half).max()) if plain_half is not None else None
        print(json.dumps(dict(check=variant["name"], max_abs_diff_vs_fp32=float(np.abs(frames_out - reference).max()),
                              max_abs_diff_vs_fp16_eager=against_half,
                              within_tolerance=None if against_half is None else against_half <= 2 / 255)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=["sd15", "sd21"], default="sd15")
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU: checks the script, not a benchmark")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--frames", type=int, nargs="+", default=[16])
    parser.add_argument("--res", nargs="+", default=["512x512"], help="WIDTHxHEIGHT, e.g. 512x512 768x448")
    parser.add_argument("--guidance", nargs="+", choices=["w", "w+w_t"], default=["w"])
    parser.add_argument("--grid", action="store_true", help="frames 16 32 128, 512x512 and 768x448, both guidance modes")
    parser.add_argument("--window", type=int, default=16, help="temporal window (the model's clip length)")
    parser.add_argument("--decode-chunk", type=int, default=8)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--fuse-qkv", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the VideoUNet (cold start in warmup_s)")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    parser.add_argument("--anchor", action="store_true", help="also time AnimateDiff (eager and compiled) and print ratios")
    parser.add_argument("--depth", action="store_true", help="also time depth estimation over the video")
    parser.add_argument("--check", action="store_true", help="compare each optimisation's output with fp32/fp16 eager")
    args = parser.parse_args()
    if args.grid:
        args.frames, args.res, args.guidance = [16, 32, 128], ["512x512", "768x448"], ["w", "w+w_t"]
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if args.check:
        check_optimisations(args, device)
        return
    base = "tiny" if args.tiny else args.base
    pipe = build_pipeline(base, args.tiny, args.window, device, dtype)
    apply_optimisations(pipe, args)
    results = []
    for frames in args.frames:
        for res in args.res:
            width, height = (int(v) for v in res.lower().split("x"))
            for mode in args.guidance:
                results.append(time_edit(pipe, args, frames, height, width, 1.0 if mode == "w" else 1.5, device, dtype))
                print(json.dumps(results[-1]), flush=True)
            if args.depth:
                print(json.dumps(time_depth(pipe, frames, height, width, device)), flush=True)
    if args.anchor:
        ours = next((r for r in results if r["frames"] == 16 and (r["width"], r["height"]) == (512, 512) and r["guidance"] == "w"), None)
        for compile_ in (False, True):
            anchor = run_anchor(args, compile_)
            print(json.dumps(anchor), flush=True)
            if ours is not None:
                print(json.dumps(dict(comparison=f"gen1 / {anchor['system']}", gen1_s=ours["seconds"],
                                      anchor_s=anchor["seconds"], ratio=ours["seconds"] / anchor["seconds"],
                                      speedup=anchor["seconds"] / ours["seconds"])), flush=True)


if __name__ == "__main__":
    main()
