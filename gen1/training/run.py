"""The state of a training run between steps (:class:`Run`), apart from the loop that advances it
(:mod:`gen1.training.trainer`), so that what reads a run (the export, FSDP's gather) need not import the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from gen1.training.config import Config
from gen1.training.sources import TrainingData


@dataclass
class Run:
    """Everything a run holds between steps (built by :func:`setup`)."""

    config: Config
    accelerator: object
    data: TrainingData
    noise_scheduler: object  # the training DDPMScheduler; its prediction_type is the run's
    objective: torch.nn.Module  # the prepared (possibly DDP/FSDP-wrapped) DiffusionObjective
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    ema: Optional[object]  # diffusers EMAModel over the trainable parameters, or None
    params: dict[str, torch.nn.Parameter]  # the trainable parameters by name
    plan: object  # JointBatchPlan: which clips micro-step m holds on this process
    start: int = 0  # the optimizer step this process starts from (a resumed checkpoint's)
    resumed_from: Optional[str] = None
    held: Optional[object] = None  # validation inputs (HeldOut), built on first use

    @property
    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.params.values())

    @property
    def unet(self) -> torch.nn.Module:
        """The (unwrapped) VideoUNet being trained."""
        return self.accelerator.unwrap_model(self.objective).unet

    @property
    def fsdp(self) -> bool:
        return self.config.train.distributed == "fsdp"
