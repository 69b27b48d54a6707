"""Depth fidelity: does the output keep the source's structure? (scale-and-shift-invariant depth error)

Monocular depth estimators give inverse depth only up to an unknown scale and shift, so the comparison is
made invariant to both, the way MiDaS evaluates (Ranftl et al. 2020):

1. ``reference``: inverse depth of the source (an estimator's output, or ``1 / z`` of exact synthetic
   z-depth via :func:`inverse_depth`), min-max normalised **per clip** to [0, 1];
2. ``prediction``: inverse depth of the output from the chosen estimator;
3. one scale ``s`` and shift ``b`` **per clip** (not per frame, so depth that flickers in scale between
   frames is penalised) minimise ``sum (s * prediction + b - reference)^2`` over all pixels of all frames;
4. the error is ``RMSE(s * prediction + b, reference)``, in units of the reference's range (0 = perfect,
   a constant prediction scores the reference's standard deviation).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def inverse_depth(depth: torch.Tensor) -> torch.Tensor:
    """Metric depth (F,1,H,W) -> inverse depth ``1 / depth`` (tiny values guarded)."""
    return 1.0 / depth.float().clamp_min(1e-6)


def _normalize_clip(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.amin(), x.amax()
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def align_scale_shift(prediction: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Least-squares (s, b) with ``s * prediction + b ~ reference`` over all elements (float64 solve)."""
    p = prediction.double().flatten()
    r = reference.double().flatten()
    a = torch.stack([p, torch.ones_like(p)], dim=1)
    solution = torch.linalg.lstsq(a, r[:, None]).solution[:, 0]
    return float(solution[0]), float(solution[1])


def depth_error(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    """Scale-and-shift-invariant RMSE between inverse depths (F,1,H,W) (see the module docstring).

    ``prediction`` is resized (bilinear) to ``reference``'s size if they differ.
    """
    if prediction.ndim != 4 or reference.ndim != 4 or prediction.shape[1] != 1 or reference.shape[1] != 1:
        raise ValueError(
            f"depth maps must have shape (F,1,H,W), got {tuple(prediction.shape)} and {tuple(reference.shape)}"
        )
    if prediction.shape[0] != reference.shape[0]:
        raise ValueError(f"frame counts differ: prediction {prediction.shape[0]}, reference {reference.shape[0]}")
    prediction = prediction.detach().float().cpu()
    reference = _normalize_clip(reference.detach().float().cpu())
    if prediction.shape[-2:] != reference.shape[-2:]:
        prediction = F.interpolate(prediction, size=reference.shape[-2:], mode="bilinear", align_corners=False)
    s, b = align_scale_shift(prediction, reference)
    aligned = s * prediction.double() + b
    return float((aligned - reference.double()).square().mean().sqrt())


def _estimate(estimator, frames) -> torch.Tensor:
    if hasattr(estimator, "estimate"):
        return estimator.estimate(frames)
    if callable(estimator):
        return estimator(frames)
    raise ValueError(f"depth estimator must have .estimate(frames) or be callable, got {type(estimator).__name__}")


def depth_fidelity(
    output,
    estimator: Callable | object,
    *,
    source=None,
    reference_depth: torch.Tensor | None = None,
) -> float:
    """Depth error of ``output`` against the source's structure.

    ``estimator``: an object with ``.estimate(frames) -> (F,1,H,W)`` inverse depth (e.g. ``gen1.depth``'s
    ``DepthEstimator``) or a callable doing the same. The reference is ``reference_depth`` (metric z-depth,
    e.g. exact synthetic depth, turned into inverse depth) if given, else the estimator run on ``source``.
    """
    if reference_depth is not None:
        reference = inverse_depth(torch.as_tensor(reference_depth))
    elif source is not None:
        reference = _estimate(estimator, source)
    else:
        raise ValueError("depth_fidelity needs a reference: pass source=... or reference_depth=...")
    prediction = _estimate(estimator, output)
    return depth_error(torch.as_tensor(np.asarray(prediction)) if not torch.is_tensor(prediction) else prediction, reference)
