"""What a folder given as a pipeline is, when it is not one, and how to get a pipeline from it.

A pipeline folder holds ``model_index.json`` (``Gen1Pipeline.save_pretrained`` and ``gen1 train``'s export write
one). Users often give the folder next to it -- a training run rather than its ``export/``, the ``unet/`` inside
an export, a Stable Diffusion checkpoint -- and the error should say which one it is and what to give instead.
Reads a few JSON files only, so commands call it before loading anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PIPELINE_INDEX = "model_index.json"
#: What a ``gen1 train`` export trained (``trainable``, ``stage``, ``clip_length``), beside its weights: written by
#: :mod:`gen1.training.export`, read by :mod:`gen1.assembly` (both name it from here, so they cannot disagree).
EXPORT_RECORD = "training.json"


def _class_name(config: Path) -> str | None:
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def not_a_pipeline_hint(folder: str | os.PathLike) -> str:
    """Why ``folder`` (which has no ``model_index.json``) is not a pipeline, and what to do instead, in one line."""
    folder = Path(folder)
    if (folder / "export" / PIPELINE_INDEX).is_file():
        return f"it is a `gen1 train` output folder: give its export, '{folder / 'export'}'"
    if (folder / EXPORT_RECORD).is_file():
        return ("it is a `gen1 train` export from a gen1 that did not write pipelines: run the same `gen1 train` "
                "command again with train.resume=latest to export it as one")
    if _class_name(folder / "config.json") == "VideoUNet":
        if (folder.parent / PIPELINE_INDEX).is_file():
            return f"it is the UNet of a pipeline: give the pipeline folder, '{folder.parent}'"
        return ("it is a VideoUNet alone: assemble a pipeline with Gen1Pipeline.from_stable_diffusion(SD_DIR, "
                "unet=..., depth_estimator=..., content_encoder=...).save_pretrained(DIR) (docs/training.md)")
    if _class_name(folder / "unet" / "config.json") == "UNet2DConditionModel":
        return ("it is a Stable Diffusion checkpoint: use it as --base of the public route (with --motion-adapter "
                "and --controlnet), or train a Gen-1 model from it (`gen1 train`, docs/training.md)")
    return "give a folder written by Gen1Pipeline.save_pretrained or by `gen1 train` (OUTPUT/export)"


def check_edit_components(flag: str, folder: str | os.PathLike, *, user_depth: bool) -> None:
    """A pipeline folder can edit from a prompt or reference: it has a content encoder (or, on the public route,
    a text encoder) and a depth estimator unless the user gives the depth. ``ValueError`` naming what is missing
    and how to add it, before anything loads."""
    folder = Path(folder)
    index = json.loads((folder / PIPELINE_INDEX).read_text(encoding="utf-8"))

    def has(name: str) -> bool:
        value = index.get(name)
        return isinstance(value, list) and bool(value) and value[0] is not None

    exported = (folder / "training.json").is_file()
    if not has("content_encoder") and not has("text_encoder"):
        fix = ("run the `gen1 train` command again with model.content_encoder=PATH (the CLIP folder the data was "
               "encoded with) and train.resume=latest" if exported else
               "add one: pipe.content_encoder = load_content_encoder(PATH); pipe.save_pretrained(DIR)")
        raise ValueError(f"{flag} '{folder}' has no content encoder, so it cannot read a prompt or reference: {fix}")
    if not has("depth_estimator") and not user_depth:
        fix = ("or run the `gen1 train` command again with model.depth_estimator=PATH (a MiDaS .pt or a DPT / Depth "
               "Anything folder) and train.resume=latest" if exported else
               "or add one: pipe.depth_estimator = load_depth_estimator(PATH); pipe.save_pretrained(DIR)")
        raise ValueError(f"{flag} '{folder}' has no depth estimator: give your own structure with --depth, {fix}")
