"""The end of a run: the trained model written to ``OUTPUT/export`` -- an editing pipeline that can also be trained on.

``export/`` is a :class:`~gen1.pipeline.Gen1Pipeline` folder (``model_index.json``), so ``gen1 edit --model
OUTPUT/export`` and ``Gen1Pipeline.from_pretrained`` load it:

* ``unet/`` the trained VideoUNet (EMA weights when enabled; ``save_pretrained``), and
  ``temporal.safetensors`` the layers inflation added alone (:meth:`gen1.unet.VideoUNet.save_new_layers`);
* ``scheduler/`` the training scheduler, with the run's ``prediction_type`` (so the export can be the
  ``model.base`` of a later stage); the pipeline samples with DDIM on that schedule, as validation samples do;
* ``vae/``, ``content_encoder/``, ``depth_estimator/``: float32 copies of the frozen components, from
  ``model.vae`` / ``model.content_encoder`` / ``model.depth_estimator`` or, where those are empty, from
  ``model.base`` (its ``vae/``, ``content_encoder/``, ``depth_estimator/``). A component found nowhere is left
  out (``null`` in ``model_index.json``), and the run says what to set;
* ``model_index.json`` with the model's defaults (:mod:`gen1.model_defaults`): ``trained_size`` the training
  data's frame size, ``recommended_guidance_scale`` the base pipeline's, if it records one;
* :data:`EXPORT_RECORD` what trained (``trainable``, ``stage``, ``clip_length``) so that
  :meth:`gen1.pipeline.Gen1Pipeline.from_stable_diffusion` can warn when ``temporal.safetensors`` alone would drop
  trained image weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from gen1.atomic import atomic_directory
from gen1.depth import load_depth_estimator
from gen1.model_defaults import read_model_defaults
from gen1.model_folders import EXPORT_RECORD
from gen1.pipeline import Gen1Pipeline
from gen1.training.ema import ema_weights
from gen1.training.fsdp import whole_unet
from gen1.training.sources import load_frozen_content, load_frozen_vae

if TYPE_CHECKING:
    from gen1.training.config import Config
    from gen1.training.run import Run
    from gen1.training.sources import TrainingData

NEW_LAYERS_FILE = "temporal.safetensors"  # the layers inflation added (the name predates motion modules)


def export_model(run: "Run") -> Path:
    """Save the run's VideoUNet (EMA weights when enabled), scheduler and frozen components to ``OUTPUT/export``
    as a pipeline folder, atomically, from the main process; every process returns the path."""

    config, accelerator = run.config, run.accelerator
    target = Path(config.train.output_dir) / "export"
    accelerator.wait_for_everyone()
    with ema_weights(run.ema, run.trainable):  # every process: under FSDP each swaps in its own shard's EMA
        unet = whole_unet(run)  # DDP: the live module, EMA weights in it until this block ends
        if accelerator.is_main_process:
            with atomic_directory(target) as tmp:
                folder = Path(tmp)
                unet.save_pretrained(str(folder / "unet"))
                unet.save_new_layers(str(folder / NEW_LAYERS_FILE))
                run.noise_scheduler.save_pretrained(str(folder / "scheduler"))
                parts, notes = pipeline_parts(config, run.data)
                for name, module in parts.items():
                    if module is not None:
                        save_float32(module, folder / name)
                if parts["vae"] is not None:
                    write_pipeline_index(folder, unet, run.noise_scheduler, parts, trained_size(config, run.data),
                                         base_guidance(config.model.base))
                record = {"trainable": config.model.trainable, "stage": config.stage,
                          "clip_length": unet.config.clip_length}
                (folder / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            for note in notes:
                print(f"export: {note}")
    accelerator.wait_for_everyone()
    return target


def save_float32(module: torch.nn.Module, folder: Path) -> None:
    """``save_pretrained`` a float32 copy of ``module``, whatever dtype it runs in (bf16 on CUDA with the
    presets); the module in use is untouched."""
    torch.nn.Module.to(copy.deepcopy(module), dtype=torch.float32).save_pretrained(str(folder))


def pipeline_parts(config: "Config", data: Optional["TrainingData"]) -> tuple[dict, list[str]]:
    """The frozen components an editing pipeline needs beside the UNet (``vae``, ``content_encoder``,
    ``depth_estimator``: the run's own when it loaded them, else loaded on the CPU from the config), and a note for
    each that was found nowhere. Never raises: a component that fails to load becomes a note, so the export of a
    finished run is always written."""

    base = Path(config.model.base)
    content_path = config.model.content_encoder or (str(base / "content_encoder")
                                                    if (base / "content_encoder").exists() else "")
    depth_path = config.model.depth_estimator or (str(base / "depth_estimator")
                                                  if (base / "depth_estimator").exists() else "")
    loaders = {
        "vae": lambda: load_frozen_vae(config, "cpu"),
        "content_encoder": (lambda: load_frozen_content(config, "cpu")) if content_path else None,
        "depth_estimator": (lambda: _load_depth(depth_path)) if depth_path else None,
    }
    missing = {
        "vae": "no VAE (model.vae, or model.base's vae/): the export is no pipeline",
        "content_encoder": "no content encoder: `gen1 edit --model` on the export needs one; set "
                           "model.content_encoder=PATH (the CLIP folder the data was encoded with)",
        "depth_estimator": "no depth estimator: `gen1 edit --model` on the export needs --depth; set "
                           "model.depth_estimator=PATH (e.g. the --depth-model of gen1 preprocess) to include one",
    }
    parts, notes = {}, []
    for name, load in loaders.items():
        module = getattr(data, name, None)
        if module is None and load is not None:
            try:
                module = load()
            except (OSError, ValueError) as error:
                notes.append(f"{name} could not be loaded ({error})")
        if module is None:
            notes.append(missing[name])
        parts[name] = module
    return parts, notes


def _load_depth(path: str):
    return load_depth_estimator(path)


def trained_size(config: "Config", data: Optional["TrainingData"]) -> Optional[int]:
    """The frame size the run trained on: ``data.synthetic.size``, or the shards' ``size`` (square crops)."""
    if config.data.source == "synthetic":
        return int(config.data.synthetic.size)
    size = getattr(getattr(data, "dataset", None), "index", {}).get("size")
    return int(size) if size else None


def base_guidance(base: str) -> Optional[float]:
    """The guidance ``model.base`` recommends, when it is a pipeline folder that records one: a fine-tuned model
    keeps its base's recommendation."""

    try:
        return read_model_defaults(base).guidance_scale
    except (OSError, ValueError):
        return None


def write_pipeline_index(folder: Path, unet, noise_scheduler, parts: dict, size: Optional[int],
                         guidance: Optional[float]) -> None:
    """``folder/model_index.json`` of the Gen1Pipeline the saved components make (diffusers writes it)."""
    from diffusers import DDIMScheduler  # lazy: diffusers is heavy and only this path needs it

    pipe = Gen1Pipeline(vae=parts["vae"], unet=unet, scheduler=DDIMScheduler.from_config(noise_scheduler.config),
                        depth_estimator=parts["depth_estimator"], content_encoder=parts["content_encoder"],
                        trained_size=size, recommended_guidance_scale=guidance)
    pipe.save_config(str(folder))
