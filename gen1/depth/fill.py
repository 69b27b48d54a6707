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
  instead of forcing one plane through both. Solved directly in float64 over the masked pixels only (a sparse LU
  factorisation per frame), so a small region of a large frame is quick.
* ``"planar"``: the least-squares affine function ``a x + b y + c`` of the depth on a ring of ``ring`` pixels just
  outside the mask, evaluated inside (one plane per frame).
* ``"laplace"``: the harmonic fill alone, without the plane: the smoothest continuation of the boundary values (a
  constant comes back exactly, a plane only away from the frame border). For values that are not a surface (a
  correction that is zero on most of the boundary): there a plane fitted to the boundary would be extrapolated to
  wherever the mask meets the frame's border.

``walls`` (the Laplace fill): pixels outside the mask that the fill treats as the frame's border, a
mirror, instead of as values to continue (a drag's moved subject beside its old place: the old place's correction
continues the surroundings, not the subject). A part of the mask that touches nothing but walls takes their values
after all, so that every part has something to be filled from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FILL_METHODS = ("harmonic", "planar", "laplace")


def check_fill_mask(mask: torch.Tensor, what: str = "mask") -> torch.Tensor:
    """``mask`` ``(F, 1, H, W)`` as bool (> 0.5); ``ValueError`` when it is empty on every frame (nothing to fill)
    or covers a whole frame (nothing to fill it from). A frame where it is empty has nothing to fill and keeps its
    values: a subject that leaves the shot, or enters it late."""
    binary = mask > 0.5
    if not bool(binary.any()):
        raise ValueError(f"{what} is empty on every frame: nothing to fill")
    for index, frame in enumerate(binary):
        if bool(frame.all()):
            raise ValueError(f"{what} covers all of frame {index}: no surroundings to fill it from")
    return binary


def fill_depth(depth: torch.Tensor, mask: torch.Tensor, method: str = "harmonic", *, ring: int = 2) -> torch.Tensor:
    """``depth`` ``(F, 1, H, W)`` with its values where ``mask`` (same shape, > 0.5 = fill) replaced by a fill from
    the mask's boundary (see the module docstring); the values outside the mask are returned unchanged."""
    if depth.shape != mask.shape or depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth and mask must both be (F, 1, H, W), got {tuple(depth.shape)} and {tuple(mask.shape)}")
    return fill_from_boundary(depth, mask, method, ring=ring)


def fill_from_boundary(values: torch.Tensor, mask: torch.Tensor, method: str = "harmonic", *,
                       ring: int = 2, walls: torch.Tensor | None = None) -> torch.Tensor:
    """``values`` ``(F, C, H, W)`` (a depth, a clip's colours, a correction) with every channel filled where ``mask``
    ``(F, 1, H, W)`` is > 0.5, as :func:`fill_depth` fills a depth; outside the mask unchanged, bit for bit.
    ``walls`` ``(F, 1, H, W)`` (> 0.5, outside the mask): a mirror, not values (see the module docstring)."""
    if method not in FILL_METHODS:
        raise ValueError(f"fill method must be one of {', '.join(FILL_METHODS)}, got {method!r}")
    if values.ndim != 4 or mask.shape != (values.shape[0], 1, *values.shape[-2:]):
        raise ValueError(f"values (F, C, H, W) and mask (F, 1, H, W) must match, got {tuple(values.shape)} and "
                         f"{tuple(mask.shape)}")
    if walls is not None and (walls.shape != mask.shape or method != "laplace"):  # a plane would continue them
        raise ValueError(f"walls must be (F, 1, H, W) like the mask, for the Laplace fill; got "
                         f"{tuple(walls.shape)} with {method!r}")
    inside = check_fill_mask(mask)
    result = values.clone()
    for frame in range(values.shape[0]):  # frames are independent: float64 work one frame at a time
        if not bool(inside[frame].any()):
            continue  # nothing to fill on this frame
        known, where = values[frame:frame + 1].double(), inside[frame:frame + 1]
        wall = None if walls is None else walls[frame:frame + 1] > 0.5
        if method == "laplace":
            filled = _harmonic(known, where, wall)
        else:
            plane = _planar(known, where, ring)
            filled = plane if method == "planar" else plane + _harmonic(known - plane, where)
        result[frame:frame + 1] = torch.where(where, filled.to(values.dtype), values[frame:frame + 1])
    return result


def fill_holes(values: torch.Tensor, mask: torch.Tensor, method: str = "harmonic") -> torch.Tensor:
    """``values`` ``(F, C, H, W)`` filled as :func:`fill_from_boundary` fills them on the frames where ``mask``
    ``(F, 1, H, W)`` (> 0.5) has pixels and leaves some known; the other frames unchanged (nothing to fill, or nothing
    to fill from). For fills of what is left over (the part of a region no other frame sees), which may be nothing."""
    inside = mask > 0.5
    counts = inside.flatten(1).sum(dim=1)
    picked = torch.nonzero((counts > 0) & (counts < inside[0].numel())).flatten()
    result = values.clone()
    if picked.numel():
        result[picked] = fill_from_boundary(values[picked], inside[picked].float(), method)
    return result


#: A pixel's 4 neighbours, as (row, column) offsets.
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _harmonic(values: torch.Tensor, inside: torch.Tensor, walls: torch.Tensor | None = None) -> torch.Tensor:
    """Discrete Laplace equation inside the mask, the values outside as Dirichlet values: ``4 u - sum(neighbours)
    = 0`` at every masked pixel, where a neighbour beyond the frame border, or on a wall, is the pixel itself (a
    mirror), i.e. ``deg u - sum(other neighbours) = 0``. Solved directly, frame by frame: a sparse LU factorisation
    of the masked pixels' system (scipy's SuperLU), every channel a right-hand side of the same factors. The system
    is non-singular when every part of the mask touches a known pixel that is not a wall: a part that touches
    walls only takes the walls as known values. Only the masked pixels are unknowns, so the cost follows the
    region's size, not the frame's."""
    import numpy as np  # lazy: only the fill needs numpy and scipy
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    result = torch.zeros(values.shape, dtype=torch.float64)
    height, width = values.shape[-2:]
    wall_frames = None if walls is None else walls[:, 0].cpu().numpy()
    for frame, (known, where) in enumerate(zip(values.double().cpu().numpy(), inside[:, 0].cpu().numpy())):
        wall = None if wall_frames is None else wall_frames[frame] & ~where
        stranded = None if wall is None or not wall.any() else _stranded(where, wall)
        rows_of, cols_of = np.nonzero(where)
        count = rows_of.size
        index = np.full(where.shape, -1, dtype=np.int64)
        index[rows_of, cols_of] = np.arange(count)
        degree = np.zeros(count)
        rhs = np.zeros((count, known.shape[0]))
        entries_row, entries_col = [np.arange(count)], [np.arange(count)]
        for dy, dx in _NEIGHBOURS:
            ny, nx = rows_of + dy, cols_of + dx
            in_frame = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
            if stranded is not None:  # a wall neighbour is a mirror, as the frame's border is (not for a stranded part)
                near = np.nonzero(in_frame)[0]
                in_frame[near] = ~(wall[ny[near], nx[near]] & ~stranded[rows_of[near], cols_of[near]])
            degree += in_frame
            pixel, ny, nx = np.nonzero(in_frame)[0], ny[in_frame], nx[in_frame]
            neighbour = index[ny, nx]
            unknown = neighbour >= 0
            entries_row.append(pixel[unknown])
            entries_col.append(neighbour[unknown])
            np.add.at(rhs, pixel[~unknown], known[:, ny[~unknown], nx[~unknown]].T)
        data = np.concatenate([degree] + [-np.ones(r.size) for r in entries_row[1:]])
        system = csc_matrix((data, (np.concatenate(entries_row), np.concatenate(entries_col))), shape=(count, count))
        # symmetric positive definite: a symmetric ordering and no pivoting (about half the factors' memory)
        factors = splu(system, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0, options=dict(SymmetricMode=True))
        solution = factors.solve(rhs)  # (count, C)
        result[frame][:, torch.from_numpy(where)] = torch.from_numpy(np.ascontiguousarray(solution.T))
    return result


def _stranded(inside, walls):
    """The pixels of ``inside`` (bool ``(H, W)``) in a part (4-connected, as the stencil) that touches no known pixel
    but ``walls``: such a part would have nothing to be filled from, so the walls are values to it (and stay a mirror
    to every other part)."""
    import numpy as np  # lazy: only the fill needs numpy and scipy
    from scipy import ndimage

    parts, count = ndimage.label(inside)
    known = ~inside & ~walls
    touching = np.unique(parts[ndimage.binary_dilation(known) & inside])
    return np.isin(parts, np.setdiff1d(np.arange(1, count + 1), touching))


def _planar(values: torch.Tensor, inside: torch.Tensor, ring: int) -> torch.Tensor:
    """Per frame and channel, the least-squares plane ``a x + b y + c`` through ``values`` ``(F, C, H, W)`` on a
    ``ring``-pixel band around the mask, evaluated everywhere (float64)."""
    size = 2 * max(1, int(ring)) + 1
    band = (F.max_pool2d(inside.double(), size, stride=1, padding=size // 2) > 0) & ~inside
    channels, height, width = values.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    basis = torch.stack([xs.flatten(), ys.flatten(), torch.ones(height * width, dtype=torch.float64)], dim=1)
    planes = []
    for frame, frame_band in zip(values.double(), band):
        rows = frame_band.flatten()
        if int(rows.sum()) < 3:
            raise ValueError("the mask's surroundings are too small for a planar fill (fewer than 3 pixels)")
        solution = torch.linalg.lstsq(basis[rows], frame.reshape(channels, -1)[:, rows].T).solution  # (3, C)
        planes.append((basis @ solution).T.reshape(channels, height, width))
    return torch.stack(planes)


__all__ = ["FILL_METHODS", "check_fill_mask", "fill_depth", "fill_from_boundary", "fill_holes"]
