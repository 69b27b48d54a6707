"""Depth filled in from a mask's boundary: the structure of what lies behind an erased subject.

Why: a masked edit guided by the subject's own depth regenerates a subject-shaped something (a ghost). Erasing
replaces the depth inside the mask by the surroundings' continued across it, so the model is guided to draw
the background there.

Two fills, both exact on a plane (gen1's depth is normalised inverse depth, and a plane's inverse depth is affine in
the image coordinates):

* ``"harmonic"`` (default): the planar fill below plus the solution of Laplace's equation for what the plane
  misses: the residual (depth minus plane) outside the mask is the boundary value (4-neighbour discrete Laplacian,
  the frame border as a mirror). On a floor the residual is zero and the floor comes back exactly, even where the
  mask touches the frame border; where the boundary spans a floor and a wall the fill bends smoothly between them
  instead of forcing one plane through both. Solved by conjugate gradients in float64, all frames at once.
* ``"planar"``: the least-squares affine function ``a x + b y + c`` of the depth on a ring of ``ring`` pixels just
  outside the mask, evaluated inside (one plane per frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FILL_METHODS = ("harmonic", "planar")


def check_fill_mask(mask: torch.Tensor, what: str = "mask") -> torch.Tensor:
    """``mask`` ``(F, 1, H, W)`` as bool (> 0.5); ``ValueError`` when a frame's mask is empty or covers the whole
    frame (nothing to fill from)."""
    binary = mask > 0.5
    for index, frame in enumerate(binary):
        if not bool(frame.any()):
            raise ValueError(f"{what} is empty on frame {index}: nothing to erase there")
        if bool(frame.all()):
            raise ValueError(f"{what} covers all of frame {index}: no surroundings to fill the erased region from")
    return binary


def fill_depth(depth: torch.Tensor, mask: torch.Tensor, method: str = "harmonic", *, ring: int = 2,
               tolerance: float = 1e-10, max_iterations: int | None = None) -> torch.Tensor:
    """``depth`` ``(F, 1, H, W)`` with its values where ``mask`` (same shape, > 0.5 = fill) replaced by a fill from
    the mask's boundary (see the module docstring); the values outside the mask are returned unchanged."""
    if method not in FILL_METHODS:
        raise ValueError(f"fill method must be one of {', '.join(FILL_METHODS)}, got {method!r}")
    if depth.shape != mask.shape or depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth and mask must both be (F, 1, H, W), got {tuple(depth.shape)} and {tuple(mask.shape)}")
    inside = check_fill_mask(mask)
    plane = _planar(depth, inside, ring)
    filled = plane if method == "planar" else plane + _harmonic(depth - plane, inside, tolerance, max_iterations)
    return torch.where(inside, filled.to(depth.dtype), depth)


def _in_frame_neighbour_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of the (up to 4) neighbours of every pixel that lie inside the frame."""
    padded = F.pad(values, (1, 1, 1, 1))
    return padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:]


def _harmonic(depth: torch.Tensor, inside: torch.Tensor, tolerance: float, max_iterations) -> torch.Tensor:
    """Discrete Laplace equation inside the mask, the depth outside as Dirichlet values: ``4 u - sum(neighbours)
    = 0`` at every masked pixel, where a neighbour beyond the frame border is the pixel itself (a mirror), i.e.
    ``deg u - sum(in-frame neighbours) = 0``. Conjugate gradients on the
    unknowns (the system is symmetric positive definite when every masked region touches an unmasked pixel)."""
    known = torch.where(inside, torch.zeros_like(depth), depth).double()
    unknown = inside.double()
    degree = _in_frame_neighbour_sum(torch.ones_like(unknown))  # a missing border neighbour is the pixel itself

    def apply(x):  # A x on the unknowns (x is zero outside the mask)
        return (degree * x - _in_frame_neighbour_sum(x)) * unknown

    rhs = _in_frame_neighbour_sum(known) * unknown
    x = _ring_mean_start(depth.double(), inside) * unknown
    residual = rhs - apply(x)
    direction = residual.clone()
    rs = (residual * residual).sum(dim=(1, 2, 3), keepdim=True)
    scale = (rhs * rhs).sum(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)  # depth is in [0, 1]: at least absolute
    limit = max_iterations or int(4 * unknown.sum(dim=(1, 2, 3)).max().item() ** 0.5 * 10 + 100)
    for _ in range(limit):
        if bool((rs <= tolerance**2 * scale).all()):
            break
        step = apply(direction)
        alpha = rs / (direction * step).sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-300)
        x = x + alpha * direction
        residual = residual - alpha * step
        rs_new = (residual * residual).sum(dim=(1, 2, 3), keepdim=True)
        direction = residual + (rs_new / rs.clamp_min(1e-300)) * direction
        rs = rs_new
    return x


def _ring_mean_start(depth: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """A starting guess: each frame's mean depth on the pixels just outside its mask."""
    ring = (F.max_pool2d(inside.double(), 3, stride=1, padding=1) > 0) & ~inside
    total = (depth * ring).sum(dim=(1, 2, 3), keepdim=True)
    count = ring.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    return (total / count).expand_as(depth)


def _planar(depth: torch.Tensor, inside: torch.Tensor, ring: int) -> torch.Tensor:
    """Per frame, the least-squares plane ``a x + b y + c`` through the depth on a ``ring``-pixel band around the
    mask, evaluated everywhere."""
    size = 2 * max(1, int(ring)) + 1
    band = (F.max_pool2d(inside.double(), size, stride=1, padding=size // 2) > 0) & ~inside
    height, width = depth.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    basis = torch.stack([xs.flatten(), ys.flatten(), torch.ones(height * width, dtype=torch.float64)], dim=1)
    planes = []
    for frame, frame_band in zip(depth.double(), band):
        rows = frame_band.flatten()
        if int(rows.sum()) < 3:
            raise ValueError("the mask's surroundings are too small for a planar fill (fewer than 3 pixels)")
        solution = torch.linalg.lstsq(basis[rows], frame.flatten()[rows][:, None]).solution
        planes.append((basis @ solution).reshape(1, height, width))
    return torch.stack(planes)


__all__ = ["FILL_METHODS", "check_fill_mask", "fill_depth"]
