"""Seam ratio: are the frame pairs at temporal-window seams less consistent than the pairs inside a window?

A long video is denoised in overlapping temporal windows (:mod:`gen1.windows`). For one window *layout* (a
list of half-open frame ranges ``(start, end)`` covering the video), a pair of consecutive frames (t, t+1) is
**inside** when one window covers both frames and no other window covers either of them; every other pair is
**at a seam**: in an overlap, next to one, or across the edge of two windows that meet without overlapping.

The seam ratio of a layout is the mean warp error (:func:`gen1.eval.warp.pair_warp_errors`, flow of the
source) of its seam pairs divided by the mean over its inside pairs; pairs whose occlusion mask is empty are
left out. 1 means the seams cannot be told from the inside of a window. When both means are 0 (a constant
video) the ratio is 1; a seam error over an inside error of 0 is ``inf``. A layout with no seam pair (one
window) or no inside pair has no ratio (``None``).

An edit may use another layout at each step (:func:`gen1.windows.blend_schedule`: per window, the frames its
prediction was blended into, which is where one window hands over to the next). Its seam ratio is the
**largest** ratio over the distinct layouts of its schedule, so that a seam left at the windows of any step
shows. It is not pooled over the steps: pooled, a schedule that puts every pair at a seam equally often would
read 1 whatever the video looks like. Being a maximum it is conservative: over several layouts the clip's
motion alone lifts it a little. ``gen1 eval`` reports the same ratio of the source over the same windows (a
video without seams) as the reference for that, and the overall warp error beside both.

One edit's ratio is noisy: a layout splits a 40-80-frame clip into two sets of some twenty pairs each, and the
warp error of single pairs varies with the texture the edit happened to draw there. To compare window settings,
a benchmark edits the clip with several seeds and takes the ratio of the seeds' mean error per pair
(:func:`mean_pair_errors`): a seam is where the windows put it in every seed and survives the mean, the
seed's chance texture does not. What the mean cannot remove is the clip's own: a pair with fast motion or an
occlusion is hard in every seed, and it lifts the ratio of any layout that has it at a seam.
"""

from __future__ import annotations

import math
from typing import Sequence

Layout = Sequence[tuple[int, int]]


def seam_pairs(windows: Layout, num_frames: int) -> list[bool]:
    """Per frame pair (t, t+1), ``t < num_frames - 1``: True at a seam of ``windows``, False inside a window."""
    coverage = [0] * num_frames
    for start, end in windows:
        if not 0 <= start < end <= num_frames:
            raise ValueError(f"window ({start}, {end}) is not inside the video's {num_frames} frames")
        for frame in range(start, end):
            coverage[frame] += 1
    if 0 in coverage:
        raise ValueError(f"windows {list(windows)} leave frame {coverage.index(0)} uncovered")
    edges = {start for start, _ in windows} | {end for _, end in windows}  # an edge at e lies between e-1 and e
    return [not (coverage[t] == 1 and coverage[t + 1] == 1 and t + 1 not in edges) for t in range(num_frames - 1)]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def layout_seam_ratio(pair_errors: Sequence[float | None], windows: Layout) -> float | None:
    """Seam ratio of one layout from the warp error of every frame pair (``None`` = no valid pixels)."""
    at_seam = seam_pairs(windows, len(pair_errors) + 1)
    seam = _mean([e for e, s in zip(pair_errors, at_seam) if s and e is not None])
    inside = _mean([e for e, s in zip(pair_errors, at_seam) if not s and e is not None])
    if seam is None or inside is None:
        return None
    if inside == 0:
        return 1.0 if seam == 0 else math.inf
    return seam / inside


def distinct_layouts(schedule: Sequence[Layout]) -> list[list[tuple[int, int]]]:
    """The layouts of a per-step ``schedule`` in order of first use, each once."""
    layouts: list[list[tuple[int, int]]] = []
    for layout in schedule:
        layout = [(int(start), int(end)) for start, end in layout]
        if layout not in layouts:
            layouts.append(layout)
    return layouts


def seam_ratio(pair_errors: Sequence[float | None], schedule: Sequence[Layout]) -> float | None:
    """Seam ratio of an edit whose step ``k`` used the window layout ``schedule[k]``: the largest ratio over its
    distinct layouts (see the module docstring); ``None`` when no layout has both seam and inside pairs."""
    ratios = [layout_seam_ratio(pair_errors, layout) for layout in distinct_layouts(schedule)]
    ratios = [r for r in ratios if r is not None]
    return max(ratios) if ratios else None


def mean_pair_errors(runs: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Per frame pair, the mean of the pair's warp error over ``runs`` (several edits of the same clip, e.g.
    one per seed); ``None`` where any run has no valid pixels there (the occlusion mask comes from the source,
    so that is the same pair in every run)."""
    if not runs:
        raise ValueError("mean_pair_errors needs at least one run")
    lengths = {len(run) for run in runs}
    if len(lengths) != 1:
        raise ValueError(f"every run must have the same number of frame pairs, got {sorted(lengths)}")
    return [None if any(error is None for error in pair) else sum(pair) / len(pair) for pair in zip(*runs)]
