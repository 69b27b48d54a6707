"""The end of a run: the trained model written to ``OUTPUT/export`` so it can be used or trained further.

``export/unet/`` is a ``save_pretrained`` folder, ``export/temporal.safetensors`` the layers inflation added
alone (:meth:`gen1.unet.VideoUNet.save_new_layers`), ``export/scheduler/`` the training scheduler (so the export
can be the ``model.base`` of a later stage, and samplers use the ``prediction_type`` the model was trained for),
and ``export/`` :data:`EXPORT_RECORD` what trained (``trainable``, ``stage``, ``clip_length``) so that
:meth:`gen1.pipeline.Gen1Pipeline.from_stable_diffusion` can warn when ``temporal.safetensors`` alone would drop
trained image weights. When the run loaded frozen encoders (synthetic source, validation samples), float32
copies are saved too (``export/vae/``, ``export/content_encoder/``; see :func:`save_frozen_encoders`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

if TYPE_CHECKING:
    from gen1.training.sources import TrainingData
    from gen1.training.trainer import Run

EXPORT_RECORD = "training.json"  # what trained, beside the export's weights
NEW_LAYERS_FILE = "temporal.safetensors"  # the layers inflation added (the name predates motion modules)


def export_model(run: "Run") -> Path:
    """Save the run's VideoUNet (EMA weights when enabled), scheduler and encoders to ``OUTPUT/export``,
    atomically, from the main process; every process returns the path."""
    from gen1.atomic import atomic_directory
    from gen1.training.ema import ema_weights

    config, accelerator = run.config, run.accelerator
    target = Path(config.train.output_dir) / "export"
    accelerator.wait_for_everyone()
    unet = run.unet
    if accelerator.is_main_process:
        with ema_weights(run.ema, run.trainable), atomic_directory(target) as tmp:
            folder = Path(tmp)
            unet.save_pretrained(str(folder / "unet"))
            unet.save_new_layers(str(folder / NEW_LAYERS_FILE))
            run.noise_scheduler.save_pretrained(str(folder / "scheduler"))
            save_frozen_encoders(run.data, folder)
            record = {"trainable": config.model.trainable, "stage": config.stage,
                      "clip_length": unet.config.clip_length}
            (folder / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()
    return target


def save_frozen_encoders(data: Optional["TrainingData"], folder: Path) -> None:
    """Save float32 copies of the run's frozen VAE / content encoder (if loaded) to ``folder/vae`` and
    ``folder/content_encoder``, whatever dtype they ran in (bf16 on CUDA with the presets), so the export can be
    the ``model.base`` of a later stage. The copies leave the modules in use untouched."""
    import copy

    for name in ("vae", "content_encoder"):
        module = getattr(data, name, None)
        if module is not None:
            torch.nn.Module.to(copy.deepcopy(module), dtype=torch.float32).save_pretrained(str(folder / name))
