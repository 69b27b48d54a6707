"""The whole UNet of a run whose weights are sharded across processes (FSDP), for export.

Under FSDP every process holds a shard of each weight, so ``run.unet`` cannot be saved as it is. Every process
takes part in gathering the full state dict (``accelerator.get_state_dict``, a collective); the main process
loads it into a fresh VideoUNet built from the same config, which it then exports. Under DDP each process holds
the whole model already and ``run.unet`` is returned unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch

from gen1.training.model import build_unet


def whole_unet(run) -> Optional[torch.nn.Module]:
    """``run.unet`` in full on the main process (None elsewhere under FSDP). Call it on every process."""
    if not run.fsdp:
        return run.unet
    state = run.accelerator.get_state_dict(run.objective)  # keys of DiffusionObjective: "unet.<VideoUNet key>"
    if not run.accelerator.is_main_process:
        return None

    unet = build_unet(run.config, run.data)
    unet.load_state_dict({key[len("unet."):]: value for key, value in state.items()}, strict=True)
    return unet.eval()
