"""Imagic adapters: a LoRA and two content embeddings that edit one clip (``gen1 customize --imagic``).

Imagic (Kawar et al., 2023) and, for video, Dreamix (Molad et al., 2023) edit what is already in a shot in three
steps: optimise a content embedding, starting from the target text's, until the frozen model reconstructs the input
with it; fine-tune the model on the input with that embedding; edit with the interpolation
``eta x target + (1 - eta) x optimised``. :mod:`gen1.training.imagic` runs the first two steps; this module is
what an edit needs: the adapter folder, written atomically, and the embeddings it holds once loaded.

An adapter is a folder::

    DIR/lora.safetensors     a gen1 adapter (:mod:`gen1.adapters`: the LoRA matrices and their metadata)
    DIR/imagic.safetensors   "optimised" and "target", each ``(1, L, D)`` float32 in the space the route conditions
                             on (native: a CLIP image embedding, L = 1; public route: text hidden states), with
                             metadata "gen1_imagic" (the target text, the route, the losses of the optimisation)

:func:`load_imagic_adapter` applies the LoRA and keeps the embeddings with it (on the VideoUNet's adapter record),
so :func:`gen1.adapters.remove_adapter` removes both; :meth:`gen1.routes.Route.edit_content` mixes them for an
edit's ``imagic_scale``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from gen1.adapters import _unet_of, load_adapter, save_adapter
from gen1.atomic import atomic_directory

ADAPTER_FILE = "lora.safetensors"
EMBEDDINGS_FILE = "imagic.safetensors"
METADATA_KEY = "gen1_imagic"
KEYS = ("optimised", "target")


@dataclass(frozen=True)
class ImagicEmbeddings:
    """The two embeddings of a loaded Imagic adapter, ``(1, L, D)`` float32, and its metadata."""

    optimised: torch.Tensor
    target: torch.Tensor
    info: dict

    def mix(self, scale: float) -> torch.Tensor:
        """``scale x target + (1 - scale) x optimised``: at 0 exactly the optimised embedding, at 1 exactly the
        target's (the other term is multiplied by an exact zero)."""
        eta = check_imagic_scale(scale)
        return eta * self.target + (1.0 - eta) * self.optimised


def check_imagic_scale(scale, label: str = "imagic_scale") -> float:
    """``scale`` as a float, or ``ValueError`` unless it is a finite number in [0, 2] (the declared range of
    :attr:`gen1.settings.EditSettings.imagic_scale`)."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {scale!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 2.0):
        raise ValueError(f"{label} must be a finite number in [0, 2], got {scale!r}")
    return value


def is_imagic_adapter(path) -> bool:
    """Whether ``path`` names an Imagic adapter (a folder) rather than a ``gen1 customize`` adapter file."""
    return Path(path).is_dir()


def save_imagic_adapter(model, path, *, optimised: torch.Tensor, target: torch.Tensor, info: dict) -> Path:
    """Write the LoRA of ``model`` (a VideoUNet or a pipeline, :func:`gen1.adapters.save_adapter`) and the two
    embeddings to the folder ``path``, atomically: a reader sees the previous folder or the complete new one."""
    from safetensors.torch import save_file  # lazy: safetensors is heavy and only this path needs it

    tensors = {"optimised": optimised, "target": target}
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous().clone() for key, value in tensors.items()}
    if tensors["optimised"].shape != tensors["target"].shape or tensors["target"].ndim != 3:
        raise ValueError(f"the Imagic embeddings must both be (1, L, D), got {tuple(tensors['optimised'].shape)} "
                         f"and {tuple(tensors['target'].shape)}")
    if not all(torch.isfinite(value).all() for value in tensors.values()):
        raise ValueError(f"the Imagic embeddings are not finite; nothing written to '{path}'")
    with atomic_directory(path) as tmp:
        save_adapter(model, Path(tmp) / ADAPTER_FILE)
        save_file(tensors, str(Path(tmp) / EMBEDDINGS_FILE), metadata={METADATA_KEY: json.dumps(info)})
    return Path(path)


def read_imagic_info(path) -> dict:
    """The metadata of the Imagic adapter folder ``path`` (no tensor is read); ``ValueError`` naming what is missing
    or damaged."""
    from gen1.checks import safetensors_metadata  # lazy: only reading an adapter needs it

    folder = Path(path)
    for name in (ADAPTER_FILE, EMBEDDINGS_FILE):
        if not (folder / name).is_file():
            raise ValueError(f"'{folder}' is not an Imagic adapter: it has no {name} (gen1 customize --imagic "
                             "writes both)")
    try:
        metadata = safetensors_metadata(folder / EMBEDDINGS_FILE)
    except ValueError as error:
        raise ValueError(f"'{folder / EMBEDDINGS_FILE}' is {error}") from None
    try:
        info = json.loads(metadata[METADATA_KEY])
    except (KeyError, ValueError):
        info = None
    if not isinstance(info, dict):
        raise ValueError(f"'{folder / EMBEDDINGS_FILE}' has no readable '{METADATA_KEY}' metadata")
    return info


def load_imagic_adapter(model, path):
    """Apply the Imagic adapter folder ``path`` to ``model`` (a pipeline or its VideoUNet): the LoRA, and the
    embeddings kept for :func:`imagic_embeddings`. The embeddings are checked (both keys, the same ``(1, L, D)``
    shape, D the UNet's content width, finite); on a mismatch nothing stays applied (``ValueError`` naming it)."""
    from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

    folder = Path(path)
    info = read_imagic_info(folder)
    tensors = load_file(str(folder / EMBEDDINGS_FILE))
    unet = _unet_of(model)
    _check_embeddings(tensors, getattr(unet, "content_dim", None), folder / EMBEDDINGS_FILE)
    load_adapter(unet, folder / ADAPTER_FILE)
    attach_embeddings(unet, tensors["optimised"], tensors["target"], info)
    return model


def attach_embeddings(model, optimised: torch.Tensor, target: torch.Tensor, info: dict) -> None:
    """Keep the embeddings with the adapter already in ``model`` (a pipeline or its VideoUNet): what
    :func:`load_imagic_adapter` does after the LoRA, and an Imagic run once it ends (the pipeline it trained then
    edits with ``imagic_scale`` at once)."""
    unet = _unet_of(model)
    if getattr(unet, "_gen1_adapter", None) is None:
        raise ValueError("the model holds no gen1 adapter to keep Imagic embeddings with")
    unet._gen1_adapter["imagic"] = ImagicEmbeddings(optimised.detach().float().cpu(), target.detach().float().cpu(),
                                                    dict(info))


def _check_embeddings(tensors: dict, width, file: Path) -> None:
    if set(tensors) != set(KEYS):
        raise ValueError(f"'{file}' holds {sorted(tensors)}, an Imagic adapter holds {list(KEYS)}")
    shape = tuple(tensors["target"].shape)
    if tuple(tensors["optimised"].shape) != shape:
        raise ValueError(f"'{file}': 'optimised' has shape {tuple(tensors['optimised'].shape)}, 'target' {shape}")
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f"'{file}': the embeddings have shape {shape}, expected (1, L, D)")
    if width is not None and shape[-1] != int(width):
        raise ValueError(f"'{file}': the embeddings are {shape[-1]} wide, this model's content is {width} wide "
                         "(an adapter of another model)")
    if not all(torch.isfinite(value).all() for value in tensors.values()):
        raise ValueError(f"'{file}': the embeddings are not finite")


def imagic_embeddings(model) -> ImagicEmbeddings | None:
    """The embeddings of the Imagic adapter loaded into ``model`` (a pipeline or its VideoUNet), or None."""
    unet = getattr(model, "unet", model)
    record = getattr(unet, "_gen1_adapter", None)
    return record.get("imagic") if isinstance(record, dict) else None


def require_imagic(model, label: str = "imagic_scale") -> ImagicEmbeddings:
    """:func:`imagic_embeddings`, or ``ValueError`` naming ``label`` when no Imagic adapter is loaded."""
    embeddings = imagic_embeddings(model)
    if embeddings is None:
        raise ValueError(f"{label} needs an Imagic adapter (a folder from gen1 customize --imagic, loaded with "
                         "--adapter DIR / gen1.imagic.load_imagic_adapter); this model holds none")
    return embeddings


__all__ = ["ADAPTER_FILE", "EMBEDDINGS_FILE", "ImagicEmbeddings", "attach_embeddings", "check_imagic_scale",
           "imagic_embeddings",
           "is_imagic_adapter", "load_imagic_adapter", "read_imagic_info", "require_imagic",
           "save_imagic_adapter"]
