"""The random draws of one micro-batch, and the network inputs they make (:class:`~gen1.training.batch.NoisedClips`).

All draws come from one ``torch.Generator`` seeded by ``(seed, rank, micro-step)``, so a resumed run
draws exactly what an uninterrupted run would, independent of saved global RNG state:

* diffusion timesteps (uniform over the training scheduler's steps) and Gaussian noise;
* which frame's CLIP embedding is the clip's content (the paper conditions on one frame of the clip);
* content dropout for classifier-free guidance (content -> ``gen1.content.null_content``);
* the structure level ``t_s`` (integers uniform in ``[min, max]``; stage 3: 0, stage 4: 0..7), applied
  to the cached depth by ``gen1.conditioning.depth_to_structure`` (obscure, then [0,1] -> [-1,1]), exactly as
  ``Gen1Pipeline`` builds the structure input at inference.

Targets follow the training scheduler's ``prediction_type`` (the base model's, or ``diffusion.prediction_type``
where a config overrides it): the noise for ``epsilon``, ``get_velocity`` for ``v_prediction``.
"""

from __future__ import annotations

import torch

from gen1.training.batch import Clips, JointBatch, NoisedClips
from gen1.training.config import DiffusionConfig


def micro_generator(seed: int, rank: int, micro_step: int, stream: int = 0) -> torch.Generator:
    """The CPU generator for one micro-batch on one process (``stream`` > 0: an independent one, e.g. for data)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + micro_step + stream * 2**40) % (2**63))


def prediction_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                      prediction_type: str) -> torch.Tensor:
    """What the network must predict for ``z_t = add_noise(latents, noise, t)``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"diffusion.prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")


def structure_input(depth: torch.Tensor, levels: torch.Tensor, use_structure: bool) -> torch.Tensor:
    """Structure channels ``(B,1,F,h,w)`` from cached latent-resolution depth: obscured to ``levels[b]`` per
    sample and mapped exactly as at inference (:func:`gen1.conditioning.depth_to_structure`), or zeros when the
    stage trains without structure."""
    if not use_structure:
        return torch.zeros_like(depth)
    from gen1.conditioning import depth_to_structure

    return depth_to_structure(depth.float(), levels).to(depth.dtype)


def draw_inputs(clips: Clips, scheduler, config: DiffusionConfig, generator: torch.Generator, *,
                image_mode: bool) -> NoisedClips:
    """The network's inputs and target for ``clips`` (on their device) after this micro-step's draws.

    The target follows ``scheduler.config.prediction_type`` (noise for ``epsilon``, velocity for ``v_prediction``).
    """
    from gen1.content import as_unet_context, null_content

    latents = clips.latents
    device, dtype = latents.device, latents.dtype
    b, frames = latents.shape[0], latents.shape[2]
    num_train = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, num_train, (b,), generator=generator).to(device)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device, dtype)
    frame = torch.randint(0, frames, (b,), generator=generator)
    drop = torch.rand(b, generator=generator) < config.content_dropout
    lo, hi = int(config.structure_level_min), int(config.structure_level_max)
    levels = torch.randint(lo, hi + 1, (b,), generator=generator)

    emb = clips.content[torch.arange(b), frame.to(device)]  # (B, D): one frame's CLIP embedding per clip
    if drop.any():
        null = null_content(int(drop.sum()), emb.shape[-1], device, emb.dtype)
        emb = emb.clone()
        emb[drop.to(device)] = null.reshape(int(drop.sum()), -1)
    structure = structure_input(clips.depth, levels.to(device), config.use_structure)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    return NoisedClips(
        noisy=torch.cat([noisy, structure], dim=1),
        timesteps=timesteps,
        context=as_unet_context(emb),
        target=prediction_target(scheduler, latents, noise, timesteps, scheduler.config.prediction_type),
        image_mode=image_mode,
        dropped=drop,
        levels=levels,
    )


def draw_joint(batch: JointBatch[Clips], scheduler, config: DiffusionConfig,
               generator: torch.Generator) -> JointBatch[NoisedClips]:
    """:func:`draw_inputs` for each part of a micro-batch, video first, from one generator."""
    return batch.map(lambda clips, image_mode: draw_inputs(clips, scheduler, config, generator, image_mode=image_mode))
