"""Solid textures (pattern weights from surface coordinates) and the light vector of a style.

Patterns are functions of object-local / world coordinates, so they stick to surfaces as objects and the
camera move. They fade to their mean where a pixel covers more than a fraction of the pattern's period
(a cheap stand-in for mip-mapping that prevents moiré on far floors).
"""

from __future__ import annotations

import math

import torch

from gen1.synthetic.style import TEXTURES

AMBIENT = 0.30
OBJECT_PERIOD = 0.5  # texture repeat length on objects (scene units)
FLOOR_PERIOD = 1.2  # ... and on the floor


def _hash3(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor) -> torch.Tensor:
    """Deterministic lattice hash -> float in [0, 1)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65536.0


def _value_noise(p: torch.Tensor) -> torch.Tensor:
    """Trilinear value noise of points ``p`` (..., 3), smooth, in [0, 1]."""
    base = torch.floor(p)
    f = p - base
    f = f * f * (3.0 - 2.0 * f)
    i = base.to(torch.int64)
    ix, iy, iz = i.unbind(-1)
    fx, fy, fz = f.unbind(-1)
    out = torch.zeros_like(fx)
    for dx in (0, 1):
        wx = fx if dx else 1 - fx
        for dy in (0, 1):
            wy = fy if dy else 1 - fy
            for dz in (0, 1):
                wz = fz if dz else 1 - fz
                out = out + wx * wy * wz * _hash3(ix + dx, iy + dy, iz + dz)
    return out


_PATTERN_MEAN = {"flat": 0.0, "stripes": 0.5, "checker": 0.5, "noise": 0.5, "dots": math.pi * 0.3**2}


def texture_pattern(
    texture: str,
    coords: torch.Tensor,
    stripe_axis: int,
    period: float = 0.5,
    footprint: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pattern weight in [0, 1] (0 = base colour, 1 = second colour) at surface coordinates (..., 3).

    ``period`` is the pattern's repeat length in scene units. ``footprint`` (...), the size of a pixel on
    the surface, fades the pattern towards its mean where it would alias (a cheap stand-in for mip-mapping,
    which keeps far floors from turning into moiré).
    """
    if texture == "flat":
        return torch.zeros(coords.shape[:-1], dtype=coords.dtype, device=coords.device)
    if texture == "stripes":
        pattern = (torch.sin(coords[..., stripe_axis] * (2 * math.pi / period)) > 0).to(coords.dtype)
    elif texture == "checker":
        cells = torch.floor(coords / (period / 2)).to(torch.int64).sum(-1)
        pattern = (cells % 2).to(coords.dtype)
    elif texture == "noise":
        n = 0.65 * _value_noise(coords * (1.25 / period)) + 0.35 * _value_noise(coords * (3.0 / period) + 17.0)
        pattern = ((n - 0.25) * 2.0).clamp(0.0, 1.0)
    elif texture == "dots":
        q = coords / (0.8 * period)
        frac = q - torch.round(q)
        pattern = (frac.square().sum(-1) < 0.3**2).to(coords.dtype)
    else:
        raise ValueError(f"texture must be one of {TEXTURES}, got {texture!r}")
    if footprint is not None:
        fade = ((footprint / period - 0.15) / 0.35).clamp(0.0, 1.0)
        pattern = torch.lerp(pattern, torch.full_like(pattern, _PATTERN_MEAN[texture]), fade)
    return pattern


def second_color(color: torch.Tensor) -> torch.Tensor:
    """The pattern colour paired with a base colour: darker shade, or lighter for dark colours."""
    luminance = float(color @ torch.tensor([0.299, 0.587, 0.114], device=color.device))
    return color * 0.45 if luminance > 0.3 else color + 0.4 * (1 - color)


def light_vector(direction: str, right: torch.Tensor, up: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Unit vector towards the light, built in the (first-frame) camera frame."""
    combos = {
        "left": -1.0 * right + 0.7 * up - 0.4 * forward,
        "right": 1.0 * right + 0.7 * up - 0.4 * forward,
        "top": 1.0 * up - 0.25 * forward,
        "front": -1.0 * forward + 0.5 * up,
    }
    v = combos[direction]
    return v / v.norm()
