"""``load_depth_estimator``: one entry point for every depth checkpoint layout users have.

* a ``.pt`` / ``.pth`` file -> an original MiDaS release checkpoint (variant from the file name or
  ``variant=``), loaded with ``torch.load(weights_only=True)`` and a strict key/shape check;
* a directory with ``config.json``:
  - written by ``DepthEstimator.save_pretrained`` (``_class_name == "DepthEstimator"``) -> diffusers
    ``from_pretrained``;
  - a transformers checkpoint with ``model_type`` ``dpt`` or ``depth_anything`` -> strict load.

Nothing is downloaded: a name that is not a local path is a ``FileNotFoundError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gen1.depth.base import BACKENDS, DepthEstimator
from gen1.depth.midas import (
    MIDAS_PREPROCESSING,
    VARIANTS,
    check_midas_state_dict,
    default_midas_config,
    load_midas_state_dict,
    variant_from_filename,
)
from gen1.model_folders import read_json_object

_ALIASES = {"depth_anything": "depth-anything", "depthanything": "depth-anything", "midas": "midas", "dpt": "dpt",
            "depth-anything": "depth-anything"}


def _canonical_backend(backend: str | None) -> str | None:
    if backend is None:
        return None
    key = str(backend).lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown depth backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    return _ALIASES[key]


def _load_midas(path: Path, variant: str | None, network_config: dict[str, Any] | None) -> DepthEstimator:
    variant = variant or (network_config or {}).get("variant") or variant_from_filename(path.name)
    if variant is None:
        raise ValueError(f"cannot tell the MiDaS variant from the file name '{path.name}'; pass variant= one of "
                         f"{list(VARIANTS)}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    overrides = {k: v for k, v in (network_config or {}).items() if k != "variant"}
    cfg = default_midas_config(variant, **overrides)
    sd = load_midas_state_dict(path)
    estimator = DepthEstimator(backend="midas", network_config=cfg.to_dict(), **MIDAS_PREPROCESSING[variant])
    # BatchNorm's num_batches_tracked is bookkeeping only; older exports may lack it
    own = estimator.network.state_dict()
    for key in own:
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = own[key]
    check_midas_state_dict(estimator.network, sd, str(path))
    estimator.network.load_state_dict(sd, strict=True)
    return estimator


def _load_directory(path: Path, backend: str | None) -> DepthEstimator:
    from gen1.depth import hf  # lazy: its own package, loaded by the time this runs

    config = read_json_object(path / "config.json", "a model config")
    if config.get("_class_name") == DepthEstimator.__name__:
        return DepthEstimator.from_pretrained(str(path))
    detected = hf.backend_for_model_type(config.get("model_type"))
    if detected is None:
        raise ValueError(f"'{path}/config.json' is neither a gen1 DepthEstimator nor a transformers DPT / Depth "
                         f"Anything checkpoint (model_type={config.get('model_type')!r})")
    if backend is not None and backend != detected:
        raise ValueError(f"backend={backend!r} but '{path}' holds a {detected!r} checkpoint "
                         f"(model_type={config.get('model_type')!r})")
    net_config, state_dict, prediction = hf.load_transformers_network(path, detected)
    estimator = DepthEstimator(backend=detected, network_config=net_config, prediction=prediction,
                               **hf.preprocessing_from_directory(path, detected))
    estimator.network.load_state_dict(state_dict, strict=True)
    return estimator


def load_depth_estimator(
    name_or_path: str | os.PathLike,
    *,
    backend: str | None = None,
    variant: str | None = None,
    network_config: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DepthEstimator:
    """Load a depth estimator from a local checkpoint (see the module docstring for the layouts).

    ``backend``: "midas", "dpt" or "depth-anything" (checked against what the path holds; unknown
    names are a ``ValueError`` listing the known ones). ``variant``: MiDaS variant when the file
    name does not say it. ``network_config``: MiDaS architecture overrides (fields of
    :class:`~gen1.depth.midas.MidasConfig`) for non-standard sizes. Returns the estimator in eval
    mode on ``device`` / ``dtype``.
    """
    backend = _canonical_backend(backend)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"depth checkpoint not found: '{name_or_path}' (gen1 never downloads weights: pass a local MiDaS .pt "
            "file or a directory saved with save_pretrained)"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"depth checkpoint directory '{path}' has no config.json")
        if variant is not None or network_config is not None:
            raise ValueError("variant= and network_config= only apply to MiDaS .pt checkpoints")
        estimator = _load_directory(path, backend)
    else:
        if backend not in (None, "midas"):
            raise ValueError(f"backend={backend!r} expects a checkpoint directory, got the file '{path}'")
        if path.suffix.lower() not in (".pt", ".pth", ".ckpt"):
            raise ValueError(f"depth checkpoint file must be a MiDaS .pt/.pth file, got '{path}'")
        estimator = _load_midas(path, variant, network_config)
    estimator = estimator.to(device=device)
    if estimator.dtype != dtype:
        estimator = torch.nn.Module.to(estimator, dtype=dtype)  # ModelMixin.to would warn needlessly
    return estimator.eval()
