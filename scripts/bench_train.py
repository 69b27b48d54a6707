"""Training-step benchmark: samples/s and achieved TFLOP/s of a full-size VideoUNet on cached latents.

Builds an SD-1.5-sized (or SD-2.1-sized) image UNet with random weights (compute does not depend on the
weights), inflates it to a VideoUNet with one structure channel, and times optimizer steps on random
"cached" latents: 8 frames of 256x448 video = 32x56 latents, bf16 autocast, with gradient checkpointing
on and off. FLOPs of one step (forward + backward) are counted with ``torch.utils.flop_counter``.

    python scripts/bench_train.py                      # GPU, both checkpointing settings, JSON lines
    python scripts/bench_train.py --tiny --steps 2     # CPU smoke test of the script itself
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from gen1.unet import VideoUNet

# Dense bf16 matmul throughput reachable on the GPUs this project is measured on (issue 8 and the
# workplace's device notes: about 790 TFLOP/s on H100/H200); "share_of_peak" is relative to it.
PEAK_TFLOPS = {"H100": 790.0, "H200": 790.0}

BASE_CONFIGS = {
    "sd15": dict(cross_attention_dim=768, sample_size=64),
    "sd21": dict(
        cross_attention_dim=1024, sample_size=96, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True
    ),
    "tiny": dict(
        block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, norm_num_groups=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8, sample_size=16,
    ),
}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def build_model(base: str, device, gradient_checkpointing: bool, frames: int) -> VideoUNet:
    unet = UNet2DConditionModel(**BASE_CONFIGS[base])
    model = VideoUNet.from_image_unet(unet, structure_channels=1, max_frames=max(frames, 8)).to(device)
    if gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    return model


def make_step(model, optimizer, batch, device, dtype):
    latents, depth, content, timesteps = batch

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            noise = torch.randn_like(latents)
            prediction = model(torch.cat([latents + noise, depth], dim=1), timesteps, content).sample
            loss = torch.nn.functional.mse_loss(prediction.float(), noise.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def run(args, gradient_checkpointing: bool) -> dict:
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    model = build_model(args.base, device, gradient_checkpointing, args.frames)
    params = list(model.parameters()) if args.trainable == "all" else list(model.new_layers_parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    h, w = args.latent_size
    generator = torch.Generator(device).manual_seed(0)
    batch = (
        torch.randn(args.batch, model.latent_channels, args.frames, h, w, device=device, generator=generator),
        torch.rand(args.batch, 1, args.frames, h, w, device=device, generator=generator),
        torch.randn(args.batch, 1, model.content_dim, device=device, generator=generator),
        torch.randint(0, 1000, (args.batch,), device=device, generator=generator),
    )
    step = make_step(model, optimizer, batch, device, dtype)
    # Model FLOPs (forward + backward) are counted without checkpointing, so the recomputation that
    # checkpointing adds shows up as a lower achieved TFLOP/s rather than as extra useful work.
    model.disable_gradient_checkpointing()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    if gradient_checkpointing:
        model.enable_gradient_checkpointing()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    peak = peak_tflops(device)
    achieved = flops / seconds / 1e12
    return dict(
        benchmark="train_step", base=args.base, device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        dtype=args.dtype, trainable=args.trainable, gradient_checkpointing=gradient_checkpointing, batch=args.batch,
        frames=args.frames, latent_hw=[h, w], params_M=sum(p.numel() for p in model.parameters()) / 1e6,
        step_s=seconds, samples_per_s=args.batch / seconds, step_TFLOP=flops / 1e12, TFLOPs=achieved,
        share_of_peak=achieved / peak if peak else None,
        peak_GiB=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=sorted(BASE_CONFIGS), default="sd15")
    parser.add_argument("--tiny", action="store_true", help="tiny UNet on CPU: checks the script, not a benchmark")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--latent-size", type=int, nargs=2, default=[32, 56], metavar=("H", "W"))
    parser.add_argument("--trainable", choices=["all", "temporal"], default="all")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--checkpointing", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    if args.tiny:
        args.base, args.batch, args.latent_size, args.warmup = "tiny", 1, [8, 8], 1
    settings = {"on": [True], "off": [False], "both": [False, True]}[args.checkpointing]
    for gradient_checkpointing in settings:
        print(json.dumps(run(args, gradient_checkpointing)), flush=True)


if __name__ == "__main__":
    main()
