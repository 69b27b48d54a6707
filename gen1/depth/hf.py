"""transformers depth backends: ``DPTForDepthEstimation`` (Intel DPT / MiDaS 3.x) and Depth Anything.

Both predict relative inverse depth (``predicted_depth`` (B, H, W)); Depth Anything V2 *metric*
checkpoints (``depth_estimation_type == "metric"``) predict metric depth instead, which
:class:`~gen1.depth.base.DepthEstimator` inverts. Nothing is downloaded: weights come from a local
directory in the ``save_pretrained`` layout (config.json + model.safetensors / pytorch_model.bin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gen1.model_folders import read_json_object

# gen1 backend name -> transformers model_type
MODEL_TYPES = {"dpt": "dpt", "depth-anything": "depth_anything"}


def _classes(backend: str):
    import transformers

    if backend == "dpt":
        return transformers.DPTConfig, transformers.DPTForDepthEstimation
    if backend == "depth-anything":
        return transformers.DepthAnythingConfig, transformers.DepthAnythingForDepthEstimation
    raise ValueError(f"backend must be one of {sorted(MODEL_TYPES)}, got {backend!r}")


class TransformersDepthNet(nn.Module):
    """Wraps a transformers depth model so that ``forward(pixel_values) -> (B, H, W)``."""

    def __init__(self, backend: str, network_config: dict[str, Any]):
        super().__init__()
        config_cls, model_cls = _classes(backend)
        config = config_cls.from_dict(dict(network_config))
        self.model = model_cls(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).predicted_depth


def backend_for_model_type(model_type: str | None) -> str | None:
    for backend, mt in MODEL_TYPES.items():
        if mt == model_type:
            return backend
    return None


def preprocessing_from_directory(directory: Path, backend: str) -> dict[str, Any]:
    """Input size, resize policy and mean/std from ``preprocessor_config.json`` (defaults per backend)."""
    if backend == "dpt":  # Intel/dpt-large, dpt-hybrid-midas: 384x384, mean=std=0.5
        out: dict[str, Any] = dict(input_size=(384, 384), resize_mode="exact", multiple_of=32,
                                   image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
    else:  # Depth Anything: short side 518, keep aspect, multiple of 14, ImageNet statistics
        out = dict(input_size=(518, 518), resize_mode="minimal", multiple_of=14,
                   image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))
    path = directory / "preprocessor_config.json"
    if path.is_file():
        pp = read_json_object(path, "a preprocessor config")
        size = pp.get("size")
        if isinstance(size, dict) and "height" in size and "width" in size:
            out["input_size"] = (int(size["height"]), int(size["width"]))
        elif isinstance(size, int):
            out["input_size"] = (size, size)
        if "keep_aspect_ratio" in pp:
            out["resize_mode"] = "minimal" if pp["keep_aspect_ratio"] else "exact"
        if pp.get("ensure_multiple_of"):
            out["multiple_of"] = int(pp["ensure_multiple_of"])
        if pp.get("do_normalize", True):
            out["image_mean"] = tuple(pp.get("image_mean", out["image_mean"]))
            out["image_std"] = tuple(pp.get("image_std", out["image_std"]))
        else:
            out["image_mean"], out["image_std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if backend == "dpt" and out["resize_mode"] != "exact":
        hybrid = bool(read_json_object(directory / "config.json", "a model config").get("is_hybrid", False))
        if not hybrid:  # transformers' plain-ViT DPT reassembles tokens on a square grid only
            out["resize_mode"] = "exact"
    return out


def load_transformers_network(directory: Path, backend: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """Load a transformers checkpoint strictly; return (config dict, state_dict, prediction kind).

    Missing, unexpected or wrongly shaped weights raise ``ValueError`` naming the key (transformers
    itself would only warn about missing keys and initialise them randomly).
    """
    _, model_cls = _classes(backend)
    try:
        # ignore_mismatched_sizes only to *collect* every mismatch: any mismatch is raised below, naming the key
        model, info = model_cls.from_pretrained(str(directory), output_loading_info=True, ignore_mismatched_sizes=True)
    except (RuntimeError, ValueError, OSError) as e:
        raise ValueError(f"could not load the {backend} checkpoint in '{directory}': {e}") from e
    for kind in ("mismatched_keys", "missing_keys", "unexpected_keys"):
        keys = sorted(info.get(kind) or [])
        if keys:
            first = keys[0][0] if isinstance(keys[0], tuple) else keys[0]
            raise ValueError(f"checkpoint '{directory}': {kind.replace('_', ' ')} ({len(keys)}), first: '{first}'")
    config = model.config.to_dict()
    prediction = "depth" if getattr(model.config, "depth_estimation_type", "relative") == "metric" else "inverse_depth"
    return config, {f"model.{k}": v for k, v in model.state_dict().items()}, prediction
