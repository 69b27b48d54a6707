"""``DepthEstimator``: one pipeline component for every depth backend, with batching and normalisation.

The component owns the network (a MiDaS net from :mod:`gen1.depth.midas` or a transformers model
wrapped by :mod:`gen1.depth.hf`) plus the backend's preprocessing, all recorded in its diffusers
config, so ``save_pretrained`` / ``from_pretrained`` round-trip it inside a ``Gen1Pipeline``.

``estimate(frames)`` works through the clip ``batch_size`` frames at a time (network memory does not
grow with video length), resizes each batch to the network's input size, normalises it with the
backend's mean/std, resizes the prediction back to the frames' size and finally normalises the whole
clip with one robust affine map (:func:`gen1.depth.normalize.normalize_clip_depth`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from gen1.depth.hf import TransformersDepthNet
from gen1.depth.midas import build_midas, default_midas_config
from gen1.depth.normalize import normalize_clip_depth
from gen1.weights import StrictLoadingMixin

BACKENDS = ("midas", "dpt", "depth-anything")
RESIZE_MODES = ("minimal", "upper_bound", "lower_bound", "exact")


def build_network(backend: str, network_config: dict[str, Any]) -> nn.Module:
    """Random-weight network of ``backend`` described by ``network_config``."""
    if backend == "midas":

        return build_midas(network_config)
    if backend in ("dpt", "depth-anything"):

        return TransformersDepthNet(backend, network_config)
    raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")


def network_input_size(height: int, width: int, target: Sequence[int], mode: str, multiple_of: int) -> tuple[int, int]:
    """Size the network sees for a ``height x width`` frame (MiDaS ``Resize`` semantics).

    ``exact``: ``target`` itself. Otherwise the aspect ratio is kept with one scale factor:
    ``lower_bound`` the smallest scale with both sides >= target, ``upper_bound`` the largest with both
    sides <= target, ``minimal`` whichever of the two per-side scales is closer to 1 (least change).
    Sides are then rounded to a multiple of ``multiple_of`` (nearest; down for upper_bound, up for
    lower_bound), never below one multiple.
    """
    th, tw = int(target[0]), int(target[1])
    if mode == "exact":
        sh, sw = th / height, tw / width
    else:
        sh, sw = th / height, tw / width
        if mode == "lower_bound":
            s = max(sh, sw)
        elif mode == "upper_bound":
            s = min(sh, sw)
        elif mode == "minimal":
            s = sw if abs(1 - sw) < abs(1 - sh) else sh
        else:
            raise ValueError(f"resize_mode must be one of {list(RESIZE_MODES)}, got {mode!r}")
        sh = sw = s

    def constrain(x: float) -> int:
        m = multiple_of
        if mode == "upper_bound":
            y = math.floor(x / m + 1e-6) * m  # tolerance: 854 * (256 / 854) may be 255.99999
        elif mode == "lower_bound":
            y = math.ceil(x / m - 1e-6) * m
        else:
            y = round(x / m) * m
        return max(m, int(y))

    return constrain(sh * height), constrain(sw * width)


def frames_to_tensor(frames) -> torch.Tensor:
    """uint8 numpy (F, H, W, 3) / (H, W, 3) or float tensor (F, 3, H, W) in [0, 1] -> float (F, 3, H, W)."""
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames as a numpy array must be (F, H, W, 3), got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames as a numpy array must be uint8, got {frames.dtype}")
        frames = np.ascontiguousarray(frames) if frames.flags.writeable else np.array(frames)
        return torch.from_numpy(frames).permute(0, 3, 1, 2)  # stays uint8 until batched
    if isinstance(frames, torch.Tensor):
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames as a tensor must be (F, 3, H, W), got shape {tuple(frames.shape)}")
        if not (frames.is_floating_point() or frames.dtype == torch.uint8):
            raise ValueError(f"frames as a tensor must be float in [0, 1] or uint8, got {frames.dtype}")
        return frames
    raise ValueError(f"frames must be a uint8 numpy array (F, H, W, 3) or a tensor (F, 3, H, W), got {type(frames).__name__}")


class DepthEstimator(StrictLoadingMixin, ModelMixin, ConfigMixin):
    """Monocular depth for gen1: relative inverse depth normalised per clip, 1 = near, 0 = far.

    Config: ``backend`` ("midas" | "dpt" | "depth-anything"), ``network_config`` (the architecture:
    :class:`~gen1.depth.midas.MidasConfig` fields, or the transformers config dict), the preprocessing
    (``input_size``, ``resize_mode``, ``multiple_of``, ``image_mean``, ``image_std``), ``prediction``
    ("inverse_depth" or "depth" for metric models, inverted before normalisation) and the normalisation
    percentiles ``low_percentile`` / ``high_percentile``.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        backend: str = "midas",
        network_config: dict[str, Any] | None = None,
        input_size: Sequence[int] = (384, 384),
        resize_mode: str = "minimal",
        multiple_of: int = 32,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        prediction: str = "inverse_depth",
        low_percentile: float = 2.0,
        high_percentile: float = 98.0,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {list(RESIZE_MODES)}, got {resize_mode!r}")
        if prediction not in ("inverse_depth", "depth"):
            raise ValueError(f"prediction must be 'inverse_depth' or 'depth', got {prediction!r}")
        if network_config is None:

            if backend != "midas":
                raise ValueError(f"network_config is required for backend {backend!r}")
            network_config = default_midas_config("dpt_hybrid").to_dict()
        self.network = build_network(backend, network_config)
        self.network.eval()

    # -- preprocessing -------------------------------------------------------------------------

    def input_size_for(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) the network runs at for frames of ``height x width``."""
        c = self.config
        return network_input_size(height, width, c.input_size, c.resize_mode, c.multiple_of)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """float/uint8 (B, 3, H, W) -> normalised network input on this module's device and dtype."""
        x = frames.to(self.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        h, w = self.input_size_for(*x.shape[-2:])
        if (h, w) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
        mean = torch.tensor(self.config.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.dtype)

    # -- inference -----------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw network output (B, h, w) for preprocessed input (no normalisation)."""
        return self.network(pixel_values)

    @torch.no_grad()
    def estimate_raw(self, frames, *, batch_size: int = 8) -> torch.Tensor:
        """Un-normalised inverse depth (F, 1, H, W) float32 on the CPU, at the frames' resolution."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        x = frames_to_tensor(frames)
        n, _, height, width = x.shape
        if n == 0:
            raise ValueError("frames is empty (0 frames)")
        out = torch.empty(n, 1, height, width, dtype=torch.float32)
        for start in range(0, n, batch_size):
            chunk = self.preprocess(x[start : start + batch_size])
            pred = self.forward(chunk).float()
            if pred.ndim == 3:
                pred = pred[:, None]
            pred = F.interpolate(pred, size=(height, width), mode="bicubic", align_corners=False)
            if self.config.prediction == "depth":
                pred = 1.0 / pred.clamp_min(1e-6)
            out[start : start + pred.shape[0]] = pred.cpu()
        return out

    def estimate(self, frames, *, batch_size: int = 8) -> torch.Tensor:
        """Inverse depth of a clip normalised per clip to [0, 1] (1 = near): float32 (F, 1, H, W), CPU.

        ``frames``: uint8 numpy (F, H, W, 3) or a tensor (F, 3, H, W), float in [0, 1] (or uint8).
        The result does not depend on ``batch_size`` (up to floating point noise of batched kernels).
        """
        raw = self.estimate_raw(frames, batch_size=batch_size)
        return normalize_clip_depth(raw, low=self.config.low_percentile, high=self.config.high_percentile)
