"""Train the demo's small ``AutoencoderKL`` (factor-4: 64x64 frames -> 4x16x16 latents) on rendered frames.

Loss: L1 + MSE reconstruction of the posterior *sample* plus a small KL term (``kl_weight``), as in the
LDM first stage without the perceptual/adversarial terms (our scenes are flat-shaded and need neither).
After training, ``scaling_factor`` is set to ``1 / std`` of the posterior means over held-out frames, so
latents ``z0 = mean * scaling_factor`` have unit variance as the diffusion schedule assumes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

VAE_CONFIG = dict(
    in_channels=3, out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64), layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=64,
)


def build_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**VAE_CONFIG)


def vae_loss(vae, frames: torch.Tensor, generator: torch.Generator, kl_weight: float) -> tuple[torch.Tensor, dict]:
    """frames (N,3,H,W) in [0,1] -> (loss, logs)."""
    x = frames * 2 - 1
    posterior = vae.encode(x).latent_dist
    z = posterior.sample(generator=generator)
    recon = vae.decode(z).sample
    l1 = (recon - x).abs().mean()
    mse = F.mse_loss(recon, x)
    kl = posterior.kl().mean() / x[0].numel()
    return l1 + mse + kl_weight * kl, dict(l1=l1.detach(), kl=kl.detach())


@torch.no_grad()
def held_out_frames(count: int = 32, size: int = 64) -> torch.Tensor:
    from demo_recipe.data import render_clip
    from gen1.demo.world import HELD_OUT_START

    frames = [render_clip(HELD_OUT_START + i, HELD_OUT_START + i, 2, size)[0] for i in range(count // 2)]
    return torch.cat(frames)


@torch.no_grad()
def evaluate_vae(vae, frames: torch.Tensor) -> dict:
    """Held-out reconstruction PSNR (of the posterior mean) and the latent std used for scaling."""
    x = frames * 2 - 1
    mean = vae.encode(x).latent_dist.mean
    recon = ((vae.decode(mean).sample + 1) / 2).clamp(0, 1)
    mse = F.mse_loss(recon, frames)
    return dict(psnr=float(-10 * torch.log10(mse)), latent_std=float(mean.std()), latent_mean=float(mean.mean()))


def train_vae(out: str | Path, *, max_steps: int = 1500, clips: int = 4, frames: int = 4, lr: float = 1e-3,
              kl_weight: float = 1e-6, seed: int = 0, max_minutes: float | None = None) -> dict:
    """Train (or resume) into ``OUT``; when finished export ``OUT/export`` (diffusers folder) and return
    the run's state with held-out ``metrics``."""
    from demo_recipe.data import frame_batch
    from demo_recipe.loop import cosine_lr, run_loop
    from gen1.atomic import atomic_directory

    out = Path(out)
    vae = build_vae(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)

    def loss_fn(step: int):
        rgb, _, _ = frame_batch(seed, step, clips, frames)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return vae_loss(vae, rgb, gen, kl_weight)

    state = run_loop(out, vae, optimizer, loss_fn, max_steps=max_steps, max_minutes=max_minutes,
                     lr_at=cosine_lr(lr, max_steps))
    if state["done"]:
        metrics = evaluate_vae(vae, held_out_frames())
        vae.register_to_config(scaling_factor=1.0 / metrics["latent_std"])
        with atomic_directory(out / "export") as tmp:
            vae.save_pretrained(str(tmp))
        state["metrics"] = metrics
        print(f"VAE held-out PSNR {metrics['psnr']:.2f} dB, latent std {metrics['latent_std']:.3f}", flush=True)
    return state
