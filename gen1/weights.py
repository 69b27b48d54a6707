"""Strict weight checks shared by every loader (VideoUNet temporal files, MiDaS, CLIP, adapters).

Loading never falls back to ``strict=False``: a checkpoint whose keys or shapes differ from the model's is
refused with a ``ValueError`` that names the first offending key, before any weight is copied.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Iterator, Mapping, Sequence, Union

import torch

ShapeLike = Union[torch.Tensor, torch.Size, Sequence[int]]


def _shape(value: ShapeLike) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def _and_more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def check_state_dict(
    expected: Mapping[str, ShapeLike], found: Mapping[str, torch.Tensor], source: str, hint: str = ""
) -> None:
    """Raise ``ValueError`` unless ``found`` has exactly the keys of ``expected``, each with the same shape.

    ``expected`` maps keys to tensors or shapes (what the model holds); ``found`` is what the file holds;
    ``source`` names the file in the message; ``hint`` is appended to it (e.g. "pass variant=...").
    """
    missing = sorted(key for key in expected if key not in found)
    if missing:
        key = missing[0]
        raise ValueError(
            f"{source}: missing key '{key}' (expected shape {_shape(expected[key])}){_and_more(missing)}{hint}"
        )
    unexpected = sorted(key for key in found if key not in expected)
    if unexpected:
        raise ValueError(f"{source}: unexpected key '{unexpected[0]}'{_and_more(unexpected)}{hint}")
    for key, value in expected.items():
        if _shape(found[key]) != _shape(value):
            raise ValueError(
                f"{source}: '{key}' has shape {_shape(found[key])}, the model expects {_shape(value)}{hint}"
            )


def safetensors_shapes(path, what: str) -> dict[str, list[int]]:
    """Every tensor's shape in a safetensors file, from its header alone (no tensor is read): what checks made
    before loading need. ``what`` names the file in the ``ValueError`` for an unreadable one."""
    from safetensors import safe_open  # lazy: safetensors is heavy and only this path needs it

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # safetensors' own error types for a corrupt file
        raise ValueError(f"{what} '{path}' is not a readable safetensors file: {error}") from None


class MissingWeights(ValueError):
    """A loaded model lacks weights its files should have held (the message names the first key)."""


#: The loggers of diffusers' and transformers' own reports of weights missing from a checkpoint, and what marks
#: such a report (diffusers: "... were not initialized ... You should probably TRAIN this model"; transformers' load
#: report, a table of missing and unexpected keys).
_REPORT_LOGGERS = ("diffusers.models.modeling_utils", "transformers.modeling_utils",
                   "transformers.utils.loading_report")
_REPORT_MARKS = ("were not initialized from the model checkpoint", "LOAD REPORT")


@contextlib.contextmanager
def missing_weight_reports_held() -> Iterator[None]:
    """While active, diffusers' and transformers' warnings that weights were missing from a checkpoint (and "newly
    initialized": "You should probably TRAIN this model...") are held back in this thread. When the block raises
    :class:`MissingWeights`, gen1's own one-line error naming the key says it, so they are dropped (they told a user
    of a damaged download to train the model); otherwise they are emitted as they were. Other warnings pass."""
    thread, held = threading.get_ident(), []

    def hold(record: logging.LogRecord) -> bool:
        if record.thread == thread and any(mark in record.getMessage() for mark in _REPORT_MARKS):
            held.append(record)
            return False
        return True

    loggers = [logging.getLogger(name) for name in _REPORT_LOGGERS]
    for logger in loggers:
        logger.addFilter(hold)
    try:
        yield
    except MissingWeights:
        held.clear()
        raise
    finally:
        for logger in loggers:
            logger.removeFilter(hold)
        for record in held:
            logging.getLogger(record.name).handle(record)


class StrictLoadingMixin:
    """diffusers' ``from_pretrained``, made strict for gen1's components (VideoUNet, DepthEstimator,
    ContentEncoder): any missing, unexpected or wrongly shaped key raises ``ValueError`` naming it.

    diffusers itself only warns about missing keys (leaving them randomly initialised, or on the meta device)
    and ignores unexpected ones. Put this class before ``ModelMixin`` in the bases.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        want_info = kwargs.pop("output_loading_info", False)
        with missing_weight_reports_held():  # the refusal below names the keys: diffusers' report is dropped
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True,
                                                  **kwargs)
            for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
                if info.get(kind):
                    keys = sorted(map(str, info[kind]))
                    error = MissingWeights if kind == "missing_keys" else ValueError
                    raise error(f"{pretrained_model_name_or_path}: {kind.replace('_', ' ')} {keys[:5]}")
        return (model, info) if want_info else model


def check_no_missing_weights(components: Mapping[str, object], source, folder=None) -> None:
    """Raise ``ValueError`` if a model component of a loaded pipeline has weights its files did not hold.

    diffusers leaves a key missing from a component's weights file on the meta device (with
    ``low_cpu_mem_usage``, its default) after a warning: the pipeline loads, and the first edit fails with "Cannot
    copy out of meta tensor" or "Tensor on device meta". transformers gives such a key random values after a
    warning, and the edit runs with them. gen1's own components are strict already (:class:`StrictLoadingMixin`);
    this covers the diffusers ones (VAE, ControlNets) and, with ``folder`` (where ``NAME/`` holds each component's
    files), the transformers ones (text and image encoders) by the keys of their safetensors files. ``source``
    names the model in the message. Call it inside :func:`missing_weight_reports_held` with the load, so that
    diffusers' own warning about the key ("You should probably TRAIN this model...") does not precede the error.
    """
    for name, component in components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        tensors = list(component.named_parameters()) + list(component.named_buffers())
        missing = sorted(key for key, tensor in tensors if tensor.is_meta)
        if not missing and folder is not None:
            missing = _missing_from_files(component, Path(folder) / name)
        if missing:
            raise MissingWeights(f"{source}: the weights of '{name}' lack key '{missing[0]}'{_and_more(missing)} "
                             "(a damaged or incomplete copy: fetch or save the model again)")


def _missing_from_files(model, folder: Path) -> list[str]:
    """The keys of a transformers ``model``'s state dict that no safetensors file in ``folder`` holds (those it
    ignores when missing, or ties to another, left out); none when it is no transformers model or has no such files."""
    import re

    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files or not hasattr(model, "_keys_to_ignore_on_load_missing"):  # transformers' PreTrainedModel
        return []
    stored = set()
    for path in files:
        stored.update(safetensors_shapes(path, "weights file"))
    ignored = [re.compile(pattern) for pattern in (model._keys_to_ignore_on_load_missing or [])]
    tied = getattr(model, "_tied_weights_keys", None) or []
    tied = set(tied.keys() if isinstance(tied, Mapping) else tied)
    return sorted(key for key in model.state_dict() if key not in stored and key not in tied
                  and not any(pattern.search(key) for pattern in ignored))
