"""The random draws of one micro-batch, and the network inputs they make (:class:`~gen1.training.batch.NoisedClips`).

In training every sample draws from its own ``torch.Generator`` seeded by ``(seed, micro-step, global slot)``
(:func:`slot_generators`; the slot is the sample's place in the global batch, see
:meth:`gen1.training.data.JointBatchPlan.slots`), never by the rank: a resumed run draws exactly what an
uninterrupted run would, independent of saved global RNG state, and the same global batch draws the same at any
world size. (Customisation and validation, single-process, draw a whole batch from one generator.) The draws:

* diffusion timesteps (uniform over the training scheduler's steps) and Gaussian noise;
* which frame's CLIP embedding is the clip's content (the paper conditions on one frame of the clip);
* content dropout for classifier-free guidance (content -> ``gen1.content.null_content``);
* the structure level ``t_s`` (integers uniform in ``[min, max]``; stage 3: 0, stage 4: 0..7), applied
  to the cached depth by ``gen1.conditioning.depth_to_structure`` (obscure, then [0,1] -> [-1,1]), exactly as
  ``Gen1Pipeline`` builds the structure input at inference;
* for a model with inpainting input, last: the region it draws (:func:`draw_inpainting_masks`), the rest of the
  clip given to it as known latents (:func:`gen1.conditioning.inpainting_input`), as a masked edit gives it.

Targets follow the training scheduler's ``prediction_type`` (the base model's, or ``diffusion.prediction_type``
where a config overrides it): the noise for ``epsilon``, ``get_velocity`` for ``v_prediction``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence, Union

import torch

from gen1.conditioning import depth_to_structure, inpainting_input
from gen1.content import as_unet_context, null_content
from gen1.depth import obscure
from gen1.routes.controlnet import depth_to_controlnet_image
from gen1.training.batch import Clips, JointBatch, NoisedClips
from gen1.training.config import DiffusionConfig


def micro_generator(seed: int, rank: int, micro_step: int, stream: int = 0) -> torch.Generator:
    """The CPU generator for one micro-batch on one process (``stream`` > 0: an independent one, e.g. for data)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + micro_step + stream * 2**40) % (2**63))


def slot_generators(seed: int, micro_step: int, slots: Sequence[int], stream: int = 0) -> list[torch.Generator]:
    """One CPU generator per global slot of micro-step ``micro_step`` (``stream`` > 0: independent ones, e.g. the
    data's draws). The seed is a hash of ``(seed, micro_step, slot, stream)``: no two slots of a run share one."""
    def one(slot: int) -> torch.Generator:
        key = hashlib.blake2b(f"{seed}/{micro_step}/{slot}/{stream}".encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(key, "little") >> 1)

    return [one(int(slot)) for slot in slots]


Generators = Union[torch.Generator, Sequence[torch.Generator]]


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

    return depth_to_structure(depth.float(), levels).to(depth.dtype)


@dataclass
class Draws:
    """The random draws of one micro-batch part (see the module docstring), in the order they are drawn."""

    timesteps: torch.Tensor  # (B,) on the latents' device
    noise: torch.Tensor  # like the latents
    frame: torch.Tensor  # (B,) CPU: the frame whose content embedding is the clip's content
    drop: torch.Tensor  # (B,) CPU bool: content dropped (classifier-free guidance)
    levels: torch.Tensor  # (B,) CPU int: structure level t_s


def draw(latents: torch.Tensor, scheduler, config: DiffusionConfig, generator: Generators) -> Draws:
    """This micro-step's draws for ``latents (B, C, F, h, w)``: all from ``generator``, or sample ``b``'s from
    ``generator[b]`` when it is a sequence of per-sample generators (:func:`slot_generators`)."""
    if not isinstance(generator, torch.Generator):
        if len(generator) != latents.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {latents.shape[0]} samples")
        each = [draw(latents[b:b + 1], scheduler, config, g) for b, g in enumerate(generator)]
        return Draws(*(torch.cat([getattr(d, name) for d in each]) for name in
                       ("timesteps", "noise", "frame", "drop", "levels")))
    device, dtype = latents.device, latents.dtype
    b, frames = latents.shape[0], latents.shape[2]
    num_train = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, num_train, (b,), generator=generator).to(device)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device, dtype)
    frame = torch.randint(0, frames, (b,), generator=generator)
    drop = torch.rand(b, generator=generator) < config.content_dropout
    lo, hi = int(config.structure_level_min), int(config.structure_level_max)
    levels = torch.randint(lo, hi + 1, (b,), generator=generator)
    return Draws(timesteps, noise, frame, drop, levels)


def draw_inpainting_masks(shape: tuple[int, ...], probability: float, generator: Generators) -> torch.Tensor:
    """Regions an inpainting-input model learns to draw, ``(B, 1, F, h, w)`` for latents of ``shape`` ``(B, C, F, h,
    w)``: 1 inside. With ``probability`` a sample gets a box or an ellipse (each side 15-60 % of the frame's) whose
    centre moves in a straight line across the clip, as a tracked subject's region does; otherwise the whole clip
    (nothing known: what the model is given in an edit without a mask). Per-sample generators as :func:`draw`."""
    b, frames, h, w = shape[0], shape[2], shape[-2], shape[-1]
    if not isinstance(generator, torch.Generator):
        if len(generator) != b:
            raise ValueError(f"{len(generator)} generators for a batch of {b} samples")
        return torch.cat([draw_inpainting_masks((1, *shape[1:]), probability, g) for g in generator])
    masks = torch.ones(b, 1, frames, h, w)
    ys = (torch.arange(h) + 0.5).view(1, h, 1) / h
    xs = (torch.arange(w) + 0.5).view(1, 1, w) / w
    along = torch.linspace(0, 1, frames).view(frames, 1, 1)
    for i in range(b):
        has_region, ellipse = (torch.rand(2, generator=generator) < torch.tensor([probability, 0.5])).tolist()
        half = 0.5 * (0.15 + 0.45 * torch.rand(2, generator=generator))  # half heights/widths
        start, end = 0.2 + 0.6 * torch.rand(2, 2, generator=generator)  # centres (y, x) in the middle 60 %
        if not has_region:
            continue
        centre = start + (end - start) * along.view(frames, 1)  # (F, 2)
        dy = (ys - centre[:, 0].view(frames, 1, 1)) / half[0]
        dx = (xs - centre[:, 1].view(frames, 1, 1)) / half[1]
        inside = (dy ** 2 + dx ** 2 <= 1) if ellipse else (dy.abs() <= 1) & (dx.abs() <= 1)
        masks[i, 0] = inside.float()
    return masks


def draw_inputs(clips: Clips, scheduler, config: DiffusionConfig, generator: Generators, *,
                image_mode: bool, inpainting: bool = False) -> NoisedClips:
    """The network's inputs and target for ``clips`` (on their device) after this micro-step's draws.

    The target follows ``scheduler.config.prediction_type`` (noise for ``epsilon``, velocity for ``v_prediction``).
    ``inpainting``: the model takes inpainting input; its regions are drawn last (:func:`draw_inpainting_masks`,
    ``config.inpainting_mask_probability``), so that the other draws are those of a model without it.
    """

    latents = clips.latents
    device = latents.device
    d = draw(latents, scheduler, config, generator)
    b = latents.shape[0]
    emb = clips.content[torch.arange(b), d.frame.to(device)]  # (B, D): one frame's CLIP embedding per clip
    if d.drop.any():
        null = null_content(int(d.drop.sum()), emb.shape[-1], device, emb.dtype)
        emb = emb.clone()
        emb[d.drop.to(device)] = null.reshape(int(d.drop.sum()), -1)
    structure = structure_input(clips.depth, d.levels.to(device), config.use_structure)
    noisy = scheduler.add_noise(latents, d.noise, d.timesteps)
    known = None
    if inpainting:
        masks = draw_inpainting_masks(tuple(latents.shape), config.inpainting_mask_probability, generator)
        known = inpainting_input(latents, masks.to(device))
    return NoisedClips(
        noisy=torch.cat([noisy, structure], dim=1),
        timesteps=d.timesteps,
        context=as_unet_context(emb),
        target=prediction_target(scheduler, latents, d.noise, d.timesteps, scheduler.config.prediction_type),
        image_mode=image_mode,
        dropped=d.drop,
        levels=d.levels,
        known=known,
    )


def draw_controlnet_inputs(controlnet, latents: torch.Tensor, depth: torch.Tensor, context: torch.Tensor,
                           null_context: torch.Tensor, scheduler, config: DiffusionConfig,
                           generator: torch.Generator) -> NoisedClips:
    """Image-mode inputs of the public route (a UNet with a depth ControlNet) for images ``latents (B, C, 1, h, w)``.

    The content is text hidden states ``context (1, L, D)``, dropped to ``null_context`` (the empty prompt's);
    the structure is ``depth (B, 1, H, W)`` on the ControlNet's pixel grid, obscured to each image's drawn t_s and
    shown to the frozen ControlNet exactly as :mod:`gen1.routes.controlnet` shows it at inference. The
    ControlNet's residuals travel with the inputs to the UNet (``controlnet_residuals``).
    """
    from einops import rearrange  # lazy: einops is heavy and only this path needs it

    d = draw(latents, scheduler, config, generator)
    b, device = latents.shape[0], latents.device
    dropped = d.drop.to(device).view(b, 1, 1)
    hidden = torch.where(dropped, null_context.expand(b, -1, -1), context.expand(b, -1, -1)).to(latents.dtype)
    noisy = scheduler.add_noise(latents, d.noise, d.timesteps)
    shown = obscure(depth.float(), d.levels) if config.use_structure else torch.zeros_like(depth, dtype=torch.float32)
    image = depth_to_controlnet_image(shown).to(device=device, dtype=controlnet.dtype)
    with torch.no_grad():  # the ControlNet is frozen: its residuals are inputs, not part of what trains
        down, mid = controlnet(rearrange(noisy, "b c 1 h w -> b c h w").to(controlnet.dtype), d.timesteps,
                               encoder_hidden_states=hidden.to(controlnet.dtype), controlnet_cond=image,
                               return_dict=False)
    return NoisedClips(
        noisy=noisy,
        timesteps=d.timesteps,
        context=hidden,
        target=prediction_target(scheduler, latents, d.noise, d.timesteps, scheduler.config.prediction_type),
        image_mode=True,
        dropped=d.drop,
        levels=d.levels,
        controlnet_residuals=(list(down), mid),
    )


def draw_joint(batch: JointBatch[Clips], scheduler, config: DiffusionConfig,
               generator: Union[torch.Generator, JointBatch], *, inpainting: bool = False) -> JointBatch[NoisedClips]:
    """:func:`draw_inputs` for each part of a micro-batch, video first: from one generator, or from a
    :class:`JointBatch` holding each part's per-sample generators (:func:`joint_slot_generators`)."""
    def part_generator(image_mode: bool):
        if isinstance(generator, torch.Generator):
            return generator
        return generator.image if image_mode else generator.video

    return batch.map(lambda clips, image_mode: draw_inputs(clips, scheduler, config, part_generator(image_mode),
                                                           image_mode=image_mode, inpainting=inpainting))


def joint_slot_generators(seed: int, micro_step: int, slots: tuple[Sequence[int], Sequence[int]],
                          stream: int = 0) -> JointBatch:
    """Per-sample generators for a micro-batch whose ``(image slots, video slots)`` are ``slots``
    (:meth:`gen1.training.data.JointBatchPlan.slots`), as a :class:`JointBatch` matching its parts."""
    image_slots, video_slots = slots
    return JointBatch(video=slot_generators(seed, micro_step, video_slots, stream) if video_slots else None,
                      image=slot_generators(seed, micro_step, image_slots, stream) if image_slots else None)
