"""What other frames saw behind an erased subject: the region's pixels traced along the background's motion.

Why: a subject that moves across a shot (a passer-by, a car) hides a different part of the background on every
frame, and most of what it hides on one frame is in plain view on another. Drawing that part from the boundary
(:func:`gen1.depth.fill.fill_from_boundary`) or letting the model invent it loses what the video already shows;
copying it from the frames that see it is the first step of flow-guided video inpainting (FGVC, ProPainter).

How (:func:`background_sources`):

* the background's motion between neighbouring frames is the dense flow (:func:`gen1.tracking.dense_flow`) of the
  frames with the region filled from its boundary (the subject taken out first: a contrasted subject drags the
  flow of its surroundings along with it, several pixels beyond its outline at 64 px; on a still background
  crossed by a square the copied pixels' error fell from 0.05 to 0.005), with the region's flow replaced by its
  surroundings' continued across it (the harmonic fill), the region widened by half the flow's window
  (:func:`gen1.tracking.flow_window`) for what is left of the smear;
* every pixel of a frame's region is carried along that motion, frame by frame, forwards and backwards (at most
  :data:`REACH` frames); the first frame (nearest in time) where it lands inside the picture and outside that
  frame's region (widened by one pixel, the subject's soft outline) is where the background shows; at the same
  distance forwards and backwards both are averaged;
* what no frame sees stays unknown: :func:`gen1.masked_edits.prefilled` fills it from its boundary, which now
  includes the copied pixels.

The sources are positions (frame, x, y) (:meth:`BackgroundSources.sample` reads any values there; an erase reads its
colours: :func:`gen1.masked_edits.structure_depth` says why not its depth). Nothing outside the region changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gen1.conditioning import resize
from gen1.depth.fill import fill_holes
from gen1.masking import grow
from gen1.tracking import dense_flow, flow_window, gray_uint8


#: The short side, in pixels, the background's flow is measured at (larger frames are scaled down for it, and the flow
#: read at the scaled-down positions and scaled back up): the background's motion is smooth, and the flow and its fill
#: cost in proportion to the pixels. On crossing subjects rendered at 256 px (6 scenes, the pre-fill against the
#: true background) the copies gained +2.50 dB over the boundary fill with the flow at 256, +2.30 at 128, +1.30 at
#: 64; 16 frames of 512 px took 2.7 s on one CPU thread at 256, 1.5 s at 128, 12 s at full size.
FLOW_SIZE = 256

#: How many frames away, each way, a pixel is looked for: a trace goes no further (what is hidden that long is filled
#: from the boundary), so its cost grows with the clip's length, not with its square.
REACH = 24


@dataclass
class BackgroundSources:
    """Where each region pixel's background is seen: per frame ``t``, the region's pixels ``pixels[t]`` (rows,
    columns), and per direction (backward, forward) the frame ``frame[t][k]`` (-1: not seen that way) and the
    position ``position[t][k]`` ``(N, 2)`` as (x, y) where it is seen; ``seen`` ``(F, 1, H, W)`` bool. Kept small
    for long clips: int32 pixels and frames, float32 positions (32 bytes per region pixel per frame, half what
    int64 and float64 took: 0.19 GB for 300 frames with a 20,000-pixel region)."""

    pixels: list[tuple[np.ndarray, np.ndarray]]
    frame: list[list[np.ndarray]]
    position: list[list[np.ndarray]]
    seen: torch.Tensor

    def sample(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` ``(F, C, H, W)`` (colours, a depth) with every seen region pixel replaced by ``values`` where it
        is seen (bilinear; the mean of both directions when both see it at the same distance); everything else
        unchanged, bit for bit."""
        if values.ndim != 4 or values.shape[0] != len(self.pixels) or values.shape[-2:] != self.seen.shape[-2:]:
            raise ValueError(f"values must be (F, C, H, W) like the clip traced, {tuple(self.seen.shape[:1])} frames "
                             f"of {tuple(self.seen.shape[-2:])}; got {tuple(values.shape)}")
        result = values.clone()
        array = values.detach().cpu().float().numpy()  # no copy of a float32 clip (a float64 one is 2x its size)
        for t, (rows, cols) in enumerate(self.pixels):
            total = np.zeros((rows.size, values.shape[1]))
            count = np.zeros(rows.size)
            distance = np.full(rows.size, np.inf)
            for frames in self.frame[t]:
                distance = np.minimum(distance, np.where(frames >= 0, np.abs(frames - t), np.inf))
            for frames, positions in zip(self.frame[t], self.position[t]):
                use = (frames >= 0) & (np.abs(frames - t) == distance)
                for source in np.unique(frames[use]):
                    which = use & (frames == source)
                    total[which] += _bilinear(array[source], positions[which]).T
                    count[which] += 1
            known = count > 0
            if known.any():
                filled = torch.from_numpy(total[known] / count[known, None]).to(values.device, values.dtype)
                result[t][:, torch.from_numpy(rows[known]), torch.from_numpy(cols[known])] = filled.T
        return result


def background_sources(frames: torch.Tensor, region: torch.Tensor) -> BackgroundSources:
    """Where the background behind ``region`` (``(F, 1, H, W)``, > 0.5) of ``frames`` (``(F, 3, H, W)`` in [0, 1]) is
    seen on other frames (see the module docstring)."""
    inside = region > 0.5
    num_frames, _, height, width = frames.shape
    flows = _background_flows(frames, inside)
    blocked = (grow(inside, 1) > 0.5)[:, 0].cpu().numpy()
    pixels, frame, position = [], [], []
    seen = torch.zeros_like(inside)
    for t in range(num_frames):
        rows, cols = (index.astype(np.int32) for index in np.nonzero(inside[t, 0].cpu().numpy()))
        start = np.stack([cols, rows], axis=1).astype(np.float64)
        found = [_trace(start, t, step, flows, blocked) for step in (-1, 1)]
        pixels.append((rows, cols))
        frame.append([f.astype(np.int32) for f, _ in found])
        position.append([p.astype(np.float32) for _, p in found])
        any_seen = (found[0][0] >= 0) | (found[1][0] >= 0)
        seen[t, 0, torch.from_numpy(rows[any_seen]), torch.from_numpy(cols[any_seen])] = True
    return BackgroundSources(pixels, frame, position, seen)


@dataclass
class _Flows:
    """The background's flows between neighbouring frames, float32 ``(h, w, 2)`` at the working size: ``forward[t]``
    where frame t's pixels are on frame t + 1, ``backward[t]`` where frame t + 1's are on frame t; ``scale`` (x, y):
    the working size over the frames' size."""

    forward: list[np.ndarray]
    backward: list[np.ndarray]
    scale: np.ndarray

    def move(self, points: np.ndarray, frame: int, step: int) -> np.ndarray:
        """``points`` ``(N, 2)`` (x, y) of ``frame``, in the frames' pixels, where they are on ``frame + step``."""
        flow = self.forward[frame] if step > 0 else self.backward[frame - 1]
        small = (points + 0.5) * self.scale - 0.5  # the same pixel of the working size (centres aligned)
        return points + _bilinear(flow.transpose(2, 0, 1), small).T / self.scale


def _background_flows(frames: torch.Tensor, inside: torch.Tensor) -> _Flows:
    """The flows of the frames with the region filled from its boundary, the region's flow (widened) filled from its
    surroundings; measured at :data:`FLOW_SIZE` (``resize``: the aspect kept, so the two axes' scales differ by at
    most a rounding, a fraction of a pixel)."""
    height, width = frames.shape[-2:]
    factor = min(1.0, FLOW_SIZE / min(height, width))
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    small = resize(frames.float().cpu(), size).clamp(0, 1)
    inside = resize(inside.float().cpu(), size) > 0  # any part of a working pixel in the region: in it
    widened = grow(inside, flow_window(size) // 2) > 0.5
    gray = [gray_uint8(frame) for frame in fill_holes(small, inside.float())]

    def completed(flow: np.ndarray, frame: int) -> np.ndarray:
        mask = widened[frame] if not bool(widened[frame].all()) else inside[frame]
        values = torch.from_numpy(flow).permute(2, 0, 1)[None]
        return fill_holes(values, mask[None].float())[0].permute(1, 2, 0).numpy().astype(np.float32)

    forward = [completed(dense_flow(gray[t], gray[t + 1]), t) for t in range(len(gray) - 1)]
    backward = [completed(dense_flow(gray[t + 1], gray[t]), t + 1) for t in range(len(gray) - 1)]
    return _Flows(forward, backward, np.array([size[1] / width, size[0] / height]))


def _trace(start: np.ndarray, t: int, step: int, flows: _Flows, blocked: np.ndarray):
    """Points ``start`` ``(N, 2)`` (x, y) of frame ``t`` carried frame by frame in direction ``step`` (+1 or -1)
    along ``flows``: for each, the first frame where it lands inside the picture and off ``blocked`` ``(F, H, W)``,
    and its position there (frame -1 where none does)."""
    num_frames, height, width = blocked.shape
    frame = np.full(len(start), -1, dtype=np.int64)
    position = np.zeros_like(start)
    active = np.arange(len(start))
    points = start.copy()
    current = t
    while active.size and 0 <= current + step < num_frames and abs(current + step - t) <= REACH:
        points = flows.move(points, current, step)
        current += step
        x, y = points[:, 0], points[:, 1]
        inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        points, active, x, y = points[inside], active[inside], x[inside], y[inside]
        free = ~blocked[current][np.rint(y).astype(np.int64), np.rint(x).astype(np.int64)]
        frame[active[free]] = current
        position[active[free]] = points[free]
        points, active = points[~free], active[~free]
    return frame, position


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``image`` ``(C, H, W)`` at ``points`` ``(N, 2)`` (x, y) inside the picture, bilinearly: ``(C, N)``."""
    height, width = image.shape[-2:]
    x = np.clip(points[:, 0], 0, width - 1)
    y = np.clip(points[:, 1], 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2) if width > 1 else np.zeros(len(x), dtype=np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2) if height > 1 else np.zeros(len(y), dtype=np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    wx, wy = x - x0, y - y0
    return (image[:, y0, x0] * (1 - wx) * (1 - wy) + image[:, y0, x1] * wx * (1 - wy)
            + image[:, y1, x0] * (1 - wx) * wy + image[:, y1, x1] * wx * wy)


__all__ = ["BackgroundSources", "background_sources"]
