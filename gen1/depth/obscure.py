"""Structure levels t_s: ``obscure(depth, level)`` removes detail from a depth map step by step.

Gen-1 (Esser et al. 2023, Sec. 3.2) conditions on depth that has been blurred and downsampled a
chosen number of times, so that the user decides how much of the source's fine shape the edit must
keep. The paper does not publish the exact kernel; this is our precise definition:

* one *halving* = separable Gaussian-like blur with the 5-tap binomial kernel ``[1, 4, 6, 4, 1] / 16``
  (applied along H, then along W, with replicate padding) followed by a 2x area downsample
  (``F.interpolate(mode="area")`` to ``(max(1, h // 2), max(1, w // 2))``; a side that is already
  1 pixel stays 1 pixel);
* level ``t`` in ``[0, 7]`` applies ``t / 7 * log2(min(H, W) / 4)`` halvings (none on a grid of 4 cells or fewer
  along the short side) and resizes the result back to the input's ``(H, W)`` with bilinear interpolation
  (``align_corners=False``); a fractional number of halvings ``n + a`` is the linear interpolation
  ``(1 - a) * halve(d, n) + a * halve(d, n + 1)``;
* so level 0 is the identity (the input is returned unchanged, bit for bit), level 7 keeps a coarse layout of
  about :data:`TOP_LEVEL_CELLS` = 4 cells along the short side (as the paper's t_s = 7 does: seven halvings of
  512 px depth leave 4 cells), never a constant, and the levels in between are spread evenly in log
  resolution: level ``t`` keeps a ``min(H, W)^(1 - t/7) * 4^(t/7)``-cell layout along the short side;
* levels outside ``[0, 7]`` are a ``ValueError``.

Why the halvings scale with the grid: gen1 applies the operator on the grid the model sees structure on -- the
*latent* grid for native models (:func:`gen1.conditioning.depth_to_structure`; training caches depth at latent
resolution), the output's pixel grid for a depth ControlNet. A fixed halving per level would reach a constant at
level 6 on the 64x64 latent grid of 512 px video and at level 2 on the 16x16 grid of a 64 px demo clip, so the
top levels would coincide and carry no layout at all. Scaling to the grid keeps the eight levels distinct and
level 7 at the same coarse layout at every size; on a 512 px pixel grid it is exactly one halving per level, as
in the paper.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from gen1.settings import MAX_LEVEL  # the number of levels, declared with the edit's settings

#: cells along the short side that the top level (7) keeps: the paper's 512 px depth halved seven times
TOP_LEVEL_CELLS = 4
BINOMIAL_KERNEL = (1.0, 4.0, 6.0, 4.0, 1.0)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial blur of ``x`` (N, 1, H, W) with replicate padding."""
    k = torch.tensor(BINOMIAL_KERNEL, device=x.device, dtype=x.dtype)
    k = k / k.sum()
    x = F.pad(x, (0, 0, 2, 2), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 5, 1))
    x = F.pad(x, (2, 2, 0, 0), mode="replicate")
    return F.conv2d(x, k.view(1, 1, 1, 5))


def _obscure_integer(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Apply ``steps`` blur+halve steps to ``x`` (N, 1, H, W) and resize back to (H, W)."""
    if steps == 0:
        return x
    size = x.shape[-2:]
    y = x
    for _ in range(steps):
        h, w = y.shape[-2:]
        y = _blur(y)
        y = F.interpolate(y, size=(max(1, h // 2), max(1, w // 2)), mode="area")
    return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


def _check_level(level: float) -> float:
    level = float(level)
    if not math.isfinite(level) or level < 0 or level > MAX_LEVEL:
        raise ValueError(f"level must be a number in [0, {MAX_LEVEL}], got {level!r}")
    return level


def halvings(level: float, height: int, width: int) -> float:
    """How many blur+halve steps structure level ``level`` applies to an ``height x width`` map."""
    short = min(height, width)
    if short <= TOP_LEVEL_CELLS:
        return 0.0
    return level * math.log2(short / TOP_LEVEL_CELLS) / MAX_LEVEL


def _obscure_one_level(flat: torch.Tensor, level: float) -> torch.Tensor:
    steps = halvings(level, *flat.shape[-2:])
    lo = math.floor(steps)
    frac = steps - lo
    a = _obscure_integer(flat, lo)
    if frac < 1e-9:
        return a
    b = _obscure_integer(flat, lo + 1)
    return torch.lerp(a, b, frac)


def obscure(depth: torch.Tensor, level: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Obscure ``depth`` (..., 1, H, W) to structure level ``level`` (see the module docstring).

    ``level`` is one number in [0, 7] for the whole tensor, or one level per entry of the first
    dimension (a sequence or 1-D tensor of length ``depth.shape[0]``), which is what training uses
    when it samples t_s per clip. Returns a tensor of the same shape, dtype and device (computed in
    float32 internally). Level 0 returns the input unchanged.
    """
    if not isinstance(depth, torch.Tensor) or not depth.is_floating_point():
        raise ValueError(f"depth must be a floating point torch.Tensor, got {type(depth).__name__}"
                         + (f" of dtype {depth.dtype}" if isinstance(depth, torch.Tensor) else ""))
    if depth.ndim < 3 or depth.shape[-3] != 1:
        raise ValueError(f"depth must have shape (..., 1, H, W), got {tuple(depth.shape)}")

    if isinstance(level, torch.Tensor) and level.ndim == 0:
        level = float(level)
    if isinstance(level, (int, float)):
        lv = _check_level(level)
        if lv == 0:
            return depth
        flat = depth.reshape(-1, 1, *depth.shape[-2:]).float()
        return _obscure_one_level(flat, lv).reshape(depth.shape).to(depth.dtype)

    levels = [_check_level(v) for v in (level.tolist() if isinstance(level, torch.Tensor) else level)]
    if depth.ndim < 4 or len(levels) != depth.shape[0]:
        raise ValueError(
            f"level has {len(levels)} entries but depth has shape {tuple(depth.shape)}: per-sample levels "
            "need one entry per index of the first dimension of a (B, ..., 1, H, W) tensor"
        )
    return torch.stack([obscure(d, lv) for d, lv in zip(depth, levels)])
