"""The denoising loop, knowing nothing of Gen-1: a model function, a diffusers scheduler, and hooks.

In the spirit of k-diffusion's samplers, the loop only asks a *model function* for a prediction at each step
and hands it to the scheduler. Everything Gen-1 does around it lives elsewhere and enters through two seams:

* ``model_fn(model_input, t, step) -> prediction``: the guided prediction for the whole video (float32, the
  shape of the latents) at the ``step``-th step of the loop (0-based). Conditioning routes (gen1's own UNet with structure channels, or a ControlNet route) and
  temporal windows (:class:`gen1.windows.WindowBlender`) are model functions or wrap one.
* ``after_step`` hooks ``hook(index, t, latents, prediction) -> latents``: run after each scheduler step, in
  order; the masked-edit blend (:class:`gen1.masking.KeptRegion`) and the user's ``callback_on_step_end`` are
  hooks.

Latents and scheduler arithmetic are float32 whatever the model's dtype.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

from gen1.settings import SCHEDULERS

ModelFunction = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
StepHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def scheduler_step_kwargs(scheduler, generator: torch.Generator | None) -> dict:
    """Keyword arguments for ``scheduler.step``: the generator, for schedulers that draw noise (DDPM, ancestral)."""
    if "generator" in inspect.signature(scheduler.step).parameters:
        return {"generator": generator}
    return {}


def denoise(
    model_fn: ModelFunction,
    latents: torch.Tensor,
    timesteps: Sequence[torch.Tensor] | torch.Tensor,
    scheduler,
    *,
    generator: torch.Generator | None = None,
    after_step: Sequence[StepHook] = (),
) -> torch.Tensor:
    """Run ``scheduler`` over ``timesteps`` from ``latents`` with predictions from ``model_fn``; returns float32.

    The scheduler must already be set to these timesteps (``set_timesteps``, and ``set_begin_index`` when the
    schedule starts part-way, as for ``strength < 1``).
    """
    step_kwargs = scheduler_step_kwargs(scheduler, generator)
    latents = latents.float()
    for index, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, t)
        prediction = model_fn(model_input, t, index)
        latents = scheduler.step(prediction, t, latents, **step_kwargs, return_dict=False)[0].float()
        for hook in after_step:
            latents = hook(index, t, latents, prediction)
    return latents


#: The samplers an edit can name (gen1.settings.SCHEDULERS), by diffusers class.
SCHEDULER_CLASSES = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler,
                     "unipc": UniPCMultistepScheduler}
assert tuple(SCHEDULER_CLASSES) == SCHEDULERS, "gen1.settings.SCHEDULERS and the classes here must name the same"


def make_scheduler(name: str, config):
    """A diffusers scheduler of kind ``name`` (:data:`SCHEDULERS`) from another scheduler's config."""
    if name not in SCHEDULER_CLASSES:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    return SCHEDULER_CLASSES[name].from_config(config)
