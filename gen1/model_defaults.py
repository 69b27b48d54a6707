"""A model's own defaults: the size it was trained at and the content guidance it works best with.

A small model trained at 64 px edits well at 64 px and a Stable Diffusion model at 512 px; one fixed default
fits neither (at 512 px a 64 px model runs about 64 times longer and its output falls apart). So a pipeline
folder records both, as two keys of its ``model_index.json`` (the pipeline's config, beside its components;
:class:`gen1.pipeline.Gen1Pipeline` takes them as ``__init__`` arguments, so ``save_pretrained`` writes them and
``from_pretrained`` reads them back)::

    "trained_size": 64,                   # short side in pixels of the frames the model was trained on
    "recommended_guidance_scale": 1.0     # the content guidance w to use unless told otherwise

Either may be ``null`` (unknown). Who writes them: ``gen1 train``'s export (the training data's size),
:meth:`~gen1.pipeline.Gen1Pipeline.from_stable_diffusion` and
:meth:`~gen1.pipeline.Gen1Pipeline.from_animatediff` (the image model's size, ``sample_size`` times the VAE factor
as diffusers' pipelines default to: 512 for SD 1.5), and the bundled demo model's folder (64 px, w = 1).

Who reads them: ``Gen1Pipeline.__call__`` (``size`` and ``guidance_scale`` default to them), ``gen1 edit``
(``--size``, ``--guidance``) and ``gen1 customize`` (``--size``). Where a model records nothing the fallbacks
below apply, and asking for a size far from the recorded one warns. This module imports nothing heavy, so the
commands read a folder's defaults before loading any model.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

TRAINED_SIZE_KEY = "trained_size"
GUIDANCE_KEY = "recommended_guidance_scale"
STEPS_KEY = "recommended_num_inference_steps"
FALLBACK_GUIDANCE = 7.5  # classifier-free guidance as Stable Diffusion pipelines default to it
FALLBACK_STEPS = 30  # denoising steps of a model that records none (DDIM's usual count)
FALLBACK_SIZE = 512  # the largest default short side of an edit with a model that records no size (edit_size)
FAR_FACTOR = 2.0  # a size more than this factor above or below the trained one warns


@dataclass(frozen=True)
class ModelDefaults:
    """What a model records (None: not recorded)."""

    trained_size: int | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None

    def size_or(self, fallback: int | None) -> int | None:
        return self.trained_size if self.trained_size is not None else fallback

    def guidance_or(self, fallback: float = FALLBACK_GUIDANCE) -> float:
        return self.guidance_scale if self.guidance_scale is not None else fallback

    def steps_or(self, fallback: int = FALLBACK_STEPS) -> int:
        return self.num_inference_steps if self.num_inference_steps is not None else fallback


def check_defaults(trained_size, guidance_scale, where: str = "the pipeline", num_inference_steps=None
                   ) -> ModelDefaults:
    """The values checked (``ValueError`` naming the key, its value and ``where`` they come from)."""
    if trained_size is not None:
        if isinstance(trained_size, bool) or not isinstance(trained_size, int) or not 8 <= trained_size <= 4096 \
                or trained_size % 8:
            raise ValueError(f"{where}: {TRAINED_SIZE_KEY} must be a multiple of 8 pixels in [8, 4096] or null, "
                             f"got {trained_size!r}")
    if guidance_scale is not None:
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
                or not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"{where}: {GUIDANCE_KEY} must be a finite number >= 0 or null, got {guidance_scale!r}")
        guidance_scale = float(guidance_scale)
    if num_inference_steps is not None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or not 1 <= num_inference_steps <= 1000:
            raise ValueError(f"{where}: {STEPS_KEY} must be an integer in [1, 1000] or null, "
                             f"got {num_inference_steps!r}")
    return ModelDefaults(trained_size, guidance_scale, num_inference_steps)


def read_model_defaults(folder: str | os.PathLike) -> ModelDefaults:
    """The defaults a pipeline folder records in its ``model_index.json`` (nothing recorded: both None)."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        return ModelDefaults()
    from gen1.model_folders import read_json_object  # lazy: keeps this module's import light (no torch when it loads)

    config = read_json_object(index, "a pipeline index")
    return check_defaults(config.get(TRAINED_SIZE_KEY), config.get(GUIDANCE_KEY), where=f"'{index}'",
                          num_inference_steps=config.get(STEPS_KEY))


def image_model_size(unet_config: dict, vae_config: dict) -> int | None:
    """The size an image UNet was trained at, as diffusers' pipelines take it: ``sample_size`` (latent cells) times
    the VAE's downscale factor (2 per block after the first), e.g. 64 x 8 = 512 for Stable Diffusion 1.5."""
    cells = unet_config.get("sample_size")
    if isinstance(cells, (list, tuple)):
        cells = min(cells)
    blocks = vae_config.get("block_out_channels") or ()
    if not isinstance(cells, int) or cells < 1 or not blocks:
        return None
    return cells * 2 ** (len(blocks) - 1)


def base_folder_defaults(base: str | os.PathLike) -> ModelDefaults:
    """The defaults of a Stable Diffusion folder in diffusers layout (the public route's ``--base``): its image
    model's size (:func:`image_model_size`); no guidance of its own (the fallback, 7.5, applies)."""
    base = Path(base)
    try:
        unet = json.loads((base / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((base / "vae" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ModelDefaults()
    if not isinstance(unet, dict) or not isinstance(vae, dict):
        return ModelDefaults()  # not configs: the base's loading names the file
    return ModelDefaults(image_model_size(unet, vae))


def far_from_trained(size: int, trained_size: int | None) -> str | None:
    """A one-line warning when ``size`` (an output's short side) is more than :data:`FAR_FACTOR` times above or
    below ``trained_size``; None when it is near or nothing is recorded."""
    if trained_size is None or trained_size / FAR_FACTOR <= size <= trained_size * FAR_FACTOR:
        return None
    cost = "" if size < trained_size else f", about {(size / trained_size) ** 2:.0f}x the compute per step"
    return (f"size {size} px is far from the {trained_size} px this model was trained at: expect a worse edit{cost} "
            f"(its default size is {trained_size})")


def edit_size(trained_size: int | None, source_short_side: int | None = None, multiple: int = 8) -> int:
    """The default short side of an edit, the same for ``Gen1Pipeline.__call__``, ``gen1 edit`` and ``gen1 serve``:
    the model's ``trained_size``; for a model that records none, the source's own short side up to
    :data:`FALLBACK_SIZE` (512, Stable Diffusion's), rounded down to a ``multiple`` (8 for a command's ``--size``
    and for the pipeline, :attr:`gen1.pipeline.Gen1Pipeline.size_multiple`), or :data:`FALLBACK_SIZE` when the
    source's size is not known."""
    if trained_size:
        return int(trained_size)
    if source_short_side is None:
        return FALLBACK_SIZE
    return max(multiple, min(int(source_short_side), FALLBACK_SIZE) // multiple * multiple)
