"""Per-clip normalisation of relative inverse depth.

Monocular depth networks (MiDaS, DPT, Depth Anything) predict *relative* inverse depth: each frame
has its own unknown scale and shift. Normalising each frame to [0, 1] separately makes the depth
scale flicker whenever the frame content changes a little. We therefore normalise a whole clip with
one affine map computed from robust percentiles (default 2nd and 98th) over ALL its pixels of ALL
its frames, then clamp to [0, 1]. Convention everywhere in gen1: 1 = near, 0 = far.
"""

from __future__ import annotations

import torch

# torch.quantile refuses inputs with more than 2**24 elements; beyond this we use a strided subsample.
_MAX_QUANTILE_ELEMENTS = 1 << 22


def robust_range(raw: torch.Tensor, low: float = 2.0, high: float = 98.0) -> tuple[float, float]:
    """Return the ``low``-th and ``high``-th percentiles of all finite values of ``raw``.

    Large inputs are subsampled with a fixed stride (deterministic) before ``torch.quantile``.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    values = raw.detach().reshape(-1).float()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        raise ValueError("raw depth has no finite values")
    if values.numel() > _MAX_QUANTILE_ELEMENTS:
        stride = -(-values.numel() // _MAX_QUANTILE_ELEMENTS)
        values = values[::stride]
    q = torch.quantile(values, torch.tensor([low / 100.0, high / 100.0], device=values.device))
    return float(q[0]), float(q[1])


def normalize_clip_depth(raw: torch.Tensor, *, low: float = 2.0, high: float = 98.0) -> torch.Tensor:
    """Map raw inverse depth of one clip (any shape, typically (F, 1, H, W)) to [0, 1], 1 = near.

    One affine map for the whole clip: ``(raw - p_low) / (p_high - p_low)`` clamped to [0, 1],
    with ``p_low``/``p_high`` the ``low``/``high`` percentiles over all frames. Non-finite values
    become 0 (far). A clip with no depth variation (p_high == p_low) maps to all zeros: it carries
    no structure. Returns float32 on the input's device.
    """
    if not isinstance(raw, torch.Tensor):
        raise ValueError(f"raw must be a torch.Tensor, got {type(raw).__name__}")
    raw = raw.float()
    lo, hi = robust_range(raw, low, high)
    if not hi > lo:
        return torch.zeros_like(raw)
    out = (raw - lo) / (hi - lo)
    out = torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    return out.clamp_(0.0, 1.0)


def normalize_z_depth(z_depth: torch.Tensor, *, low: float = 2.0, high: float = 98.0) -> torch.Tensor:
    """Metric z-depth of one clip (a renderer's ground truth) -> per-clip normalised inverse depth in [0, 1]
    (1 = near): :func:`normalize_clip_depth` of ``1 / z``, so exact depth takes the estimator's convention."""
    return normalize_clip_depth(1.0 / z_depth.float().clamp_min(1e-6), low=low, high=high)
