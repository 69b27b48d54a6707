"""Overlapping temporal windows for videos longer than the model's clip length, and their blending weights.

A step on a long video evaluates the UNet on one window of frames at a time (so memory depends on the window,
not on the video length) and blends the windows' noise predictions frame by frame:

* :func:`temporal_windows` tiles ``num_frames`` with windows of ``window_size`` frames whose starts advance by
  the stride ``window_size - overlap`` from an ``offset``; the last window is moved back to end on the last
  frame, and with an offset a window at frame 0 comes first, so every window has the full length the model was
  trained on (such a window may overlap its neighbour by more than ``overlap``).
* :func:`window_weights` gives each window a trapezoid: weight 1 inside, a linear ramp
  ``1/(o+1), 2/(o+1), ..., o/(o+1)`` over each of the ``o`` frames it shares with a neighbour, and no ramp at the
  video's own first and last frame. Where two windows overlap their ramps sum to exactly 1 (a linear
  cross-fade); the blend still divides by the summed weights, which keeps it a convex combination when three
  windows meet.
* **Shifted windows** (:func:`step_windows`, the default): each step tiles the video from another offset in
  ``[0, stride)``, so no frame is at a window edge at every step. With one fixed tiling the windows'
  disagreements build up at the same frames at every step and show as seams; shifted, each seam of a step
  falls inside a window at other steps, which smooth it away. The offsets go round in cycles of ``stride``
  steps aligned to the **end** of the loop and, counted back from the last step, in the order
  :func:`shift_order` (0, h, 1, h + 1, ... with h = ceil(stride / 2)): the last step is the unshifted tiling
  and the step before it puts its seams half a stride away. The last steps' seams are the ones no later step
  smooths; in this order any two consecutive steps at the end put their seams on different frames and every
  complete cycle puts each frame pair at a seam equally often, while an incomplete cycle falls on the first,
  noisiest steps. (Offsets ``0, 1, 2, ...`` from the first step left the last steps' seams next to each
  other, and a measurably higher seam ratio on the layouts of the last steps: docs/long_videos_results.md.)
  A shifted tiling is a grid: windows start every ``stride`` frames from ``offset - stride``, and at the
  video's ends a grid window is cut short (:func:`grid_windows`). The model still sees every window at its
  full trained length, moved inside the video (the computed windows of :func:`temporal_windows`), but a
  window's prediction is blended only into the frames of its place on the grid (:func:`blend_windows`):
  the rest of it is context. Blended over the whole computed window, the first and the last window would
  end at the same frames at every step (frame ``window`` and ``frames - window``) and leave a seam there.
  A shift adds at most one window per step; videos where that would cost more than :data:`MAX_SHIFT_COST`
  (fewer than four windows) keep fixed windows. docs/long_videos.md has the figures behind the defaults
  (seam ratio, :mod:`gen1.eval.seams`), docs/long_videos_results.md every measurement and the candidates that
  lost. ``shift=False`` uses the offset-0 tiling at every
  step, each window blended over its whole length (the windows of gen1 before shifting).

Depth is normalised to [0, 1] over the whole video before it is split into windows, while training normalises
it per clip; on a long video whose depth range changes, a window therefore sees depth that does not span
[0, 1] the way training clips did (known limitation; the structure levels act on it unchanged).
"""

from __future__ import annotations

from typing import Callable

import torch

#: ``predict_window(model_input_window, t, frames) -> prediction``: a route's guided prediction for the frames
#: ``frames`` (a ``slice`` of the video) given the latents of just those frames.
WindowPrediction = Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor]


def check_window_arguments(window_size: int, overlap: int) -> None:
    """Raise ``ValueError`` unless ``window_size >= 1`` and ``0 <= overlap < window_size``."""
    if int(window_size) != window_size or window_size < 1:
        raise ValueError(f"window_size must be an integer >= 1, got {window_size!r}")
    if int(overlap) != overlap or overlap < 0 or overlap >= window_size:
        raise ValueError(f"window_overlap must be an integer in [0, window_size={window_size}), got {overlap!r}")


def _grid_starts(num_frames: int, window_size: int, overlap: int, offset: int) -> list[int]:
    """Starts of the grid windows: every ``stride`` frames from ``offset`` (and ``offset - stride`` before it
    when ``offset > 0``) while a window still reaches past the previous one's overlap."""
    stride = window_size - overlap
    if int(offset) != offset or not 0 <= offset < stride:
        raise ValueError(f"offset must be an integer in [0, {stride}), got {offset!r}")
    return ([offset - stride] if offset else []) + list(range(offset, num_frames - overlap, stride))


def grid_windows(num_frames: int, window_size: int, overlap: int, offset: int = 0) -> list[tuple[int, int]]:
    """The tiling from ``offset`` as a grid: ``[(start, end), ...]`` with starts every ``window_size - overlap``
    frames, each window cut to the video (so the first and the last may be shorter than ``window_size``).

    These are the frames each window's prediction is blended into when windows shift (:func:`blend_windows`);
    :func:`temporal_windows` gives the frames the model sees for the same windows.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    check_window_arguments(window_size, overlap)
    if num_frames <= window_size:
        return [(0, num_frames)]
    starts = _grid_starts(num_frames, window_size, overlap, offset)
    return [(max(start, 0), min(start + window_size, num_frames)) for start in starts]


def temporal_windows(num_frames: int, window_size: int, overlap: int, offset: int = 0) -> list[tuple[int, int]]:
    """Return ``[(start, end), ...]`` half-open frame ranges covering ``range(num_frames)``: the windows the model
    evaluates.

    A video no longer than ``window_size`` is one window. Starts advance by ``window_size - overlap`` from
    ``offset`` (a window at 0 comes first when ``offset > 0``) and the last window is aligned to the end of the
    video: the windows of :func:`grid_windows`, each moved inside the video at its full length.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    check_window_arguments(window_size, overlap)
    if num_frames <= window_size:
        return [(0, num_frames)]
    starts = _grid_starts(num_frames, window_size, overlap, offset)
    return [(start, start + window_size) for start in (min(max(s, 0), num_frames - window_size) for s in starts)]


def window_weights(windows: list[tuple[int, int]], *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Per window, a ``(length,)`` weight ramp over the frames it shares with its neighbours (see module doc)."""
    weights = []
    for index, (start, end) in enumerate(windows):
        weight = torch.ones(end - start, dtype=dtype)
        if index > 0:
            left = max(0, min(windows[index - 1][1] - start, end - start))
            if left:
                weight[:left] = torch.minimum(weight[:left], torch.arange(1, left + 1, dtype=dtype) / (left + 1))
        if index + 1 < len(windows):
            right = max(0, min(end - windows[index + 1][0], end - start))
            if right:
                ramp = torch.arange(right, 0, -1, dtype=dtype) / (right + 1)
                weight[end - start - right :] = torch.minimum(weight[end - start - right :], ramp)
        weights.append(weight)
    return weights


MAX_SHIFT_COST = 1.25
"""Windows shift only on videos where no step's tiling has more than this many times the windows of the
unshifted tiling. A shift adds at most one window, so this means videos of four windows or more."""


def shift_order(stride: int) -> list[int]:
    """The offsets of one cycle of shifted windows, counted back from the last step: the two halves of
    ``range(stride)`` interleaved, ``[0, h, 1, h + 1, ...]`` with ``h = ceil(stride / 2)``, so that consecutive
    steps put their seams about half a stride apart (e.g. stride 6: ``[0, 3, 1, 4, 2, 5]``)."""
    half = (stride + 1) // 2
    return [offset for low in range(half) for offset in (low, low + half) if offset < stride]


def step_offset(step: int, num_steps: int, stride: int) -> int:
    """The offset of shifted windows at ``step`` of a ``num_steps``-step loop: :func:`shift_order` counted back
    from the last step (which gets offset 0)."""
    return shift_order(stride)[(num_steps - 1 - step) % stride]


def shifts_windows(num_frames: int, window_size: int, overlap: int) -> bool:
    """Whether :func:`step_windows` shifts the windows of this video (see :data:`MAX_SHIFT_COST`)."""
    if num_frames <= window_size:
        return False
    unshifted = len(temporal_windows(num_frames, window_size, overlap))
    return all(len(temporal_windows(num_frames, window_size, overlap, offset)) <= MAX_SHIFT_COST * unshifted
               for offset in range(1, window_size - overlap))


def _shifted_offset(num_frames: int, window_size: int, overlap: int, step: int, num_steps: int,
                    shift: bool) -> int | None:
    """The tiling's offset at ``step`` (:func:`step_offset`) when ``shift`` and the video is long enough
    (:func:`shifts_windows`); None when the windows stay fixed."""
    if int(step) != step or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    _check_num_steps(num_steps)
    check_window_arguments(window_size, overlap)
    if not (shift and shifts_windows(num_frames, window_size, overlap)):
        return None
    return step_offset(int(step), int(num_steps), window_size - overlap)


def step_windows(num_frames: int, window_size: int, overlap: int, step: int, *, num_steps: int,
                 shift: bool = True) -> list[tuple[int, int]]:
    """The windows the model evaluates at step ``step`` (0-based) of a ``num_steps``-step loop: the tiling from
    :func:`step_offset` when ``shift`` and the video is long enough (:func:`shifts_windows`), else offset 0."""
    offset = _shifted_offset(num_frames, window_size, overlap, step, num_steps, shift)
    return temporal_windows(num_frames, window_size, overlap, offset or 0)


def blend_windows(num_frames: int, window_size: int, overlap: int, step: int, *, num_steps: int,
                  shift: bool = True) -> list[tuple[int, int]]:
    """Per window of :func:`step_windows` (same order), the frames its prediction is blended into: its place on
    the grid (:func:`grid_windows`) when the windows shift, else the whole window. Each lies inside its
    window, and together they cover every frame."""
    offset = _shifted_offset(num_frames, window_size, overlap, step, num_steps, shift)
    if offset is None:
        return temporal_windows(num_frames, window_size, overlap)
    return grid_windows(num_frames, window_size, overlap, offset)


def _check_num_steps(num_steps: int) -> None:
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")


def window_schedule(num_frames: int, window_size: int, overlap: int, num_steps: int, *,
                    shift: bool = True) -> list[list[tuple[int, int]]]:
    """The windows the model evaluates at every step of a ``num_steps``-evaluation edit, as
    :class:`WindowBlender` uses them.

    ``num_steps`` counts model evaluations: the denoising steps for DDIM or DPM-Solver++, the length of the
    scheduler's ``timesteps`` in general (for ``strength < 1``, only the steps that run).
    """
    _check_num_steps(num_steps)
    return [step_windows(num_frames, window_size, overlap, step, num_steps=num_steps, shift=shift)
            for step in range(num_steps)]


def blend_schedule(num_frames: int, window_size: int, overlap: int, num_steps: int, *,
                   shift: bool = True) -> list[list[tuple[int, int]]]:
    """Per step, the frames each window's prediction was blended into (:func:`blend_windows`): where the
    windows of an edit meet, so the layouts its seam ratio is measured on (:mod:`gen1.eval.seams`)."""
    _check_num_steps(num_steps)
    return [blend_windows(num_frames, window_size, overlap, step, num_steps=num_steps, shift=shift)
            for step in range(num_steps)]


class WindowBlender:
    """A model function over the whole video made from a prediction over one window at a time.

    Called at step ``k`` of a loop of ``num_steps`` model evaluations (the loop hands it the step,
    :func:`gen1.denoise.denoise`), it evaluates ``predict_window`` on every window of :func:`step_windows` for step
    ``k`` and blends the windows' predictions frame by frame over the frames of :func:`blend_windows` with
    :func:`window_weights`, divided by the summed weights (a convex combination wherever windows meet).
    ``on_window`` is called after each window (progress bars).
    """

    def __init__(
        self,
        predict_window: WindowPrediction,
        num_frames: int,
        window_size: int,
        overlap: int,
        *,
        num_steps: int,
        shift: bool = True,
        device: torch.device | str | None = None,
        on_window: Callable[[], None] | None = None,
    ):
        check_window_arguments(window_size, overlap)
        _check_num_steps(num_steps)
        self.predict_window = predict_window
        self.num_frames, self.window_size, self.overlap, self.shift = num_frames, window_size, overlap, shift
        self.num_steps = int(num_steps)
        self.device = device
        self.on_window = on_window
        self._blends: dict[tuple, tuple[list[torch.Tensor], torch.Tensor]] = {}

    def windows(self, step: int) -> list[tuple[int, int]]:
        """The windows of the ``step``-th call."""
        return step_windows(self.num_frames, self.window_size, self.overlap, step, num_steps=self.num_steps,
                            shift=self.shift)

    def window_evaluations(self) -> int:
        """How many times ``predict_window`` runs in the loop's ``num_steps`` calls (the length of a progress
        bar)."""
        return sum(len(self.windows(step)) for step in range(self.num_steps))

    def _blend(self, step: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per window of ``step``, its weights over the whole window (0 on frames it only gives context to), and
        the summed weight per frame (cached per layout)."""
        windows = self.windows(step)
        blends = blend_windows(self.num_frames, self.window_size, self.overlap, step, num_steps=self.num_steps,
                               shift=self.shift)
        key = (tuple(windows), tuple(blends))
        if key not in self._blends:
            weights = []
            for (start, end), (blend_start, blend_end), ramp in zip(windows, blends, window_weights(blends)):
                weight = torch.zeros(end - start)
                weight[blend_start - start: blend_end - start] = ramp
                weights.append(weight.to(self.device))
            weight_sum = torch.zeros(self.num_frames, device=self.device)
            for (start, end), weight in zip(windows, weights):
                weight_sum[start:end] += weight
            self._blends[key] = weights, weight_sum
        return self._blends[key]

    def __call__(self, model_input: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        """The blended prediction for ``model_input`` ``(B, C, F, h, w)`` at loop step ``step``: float32, same shape."""
        if not 0 <= step < self.num_steps:
            raise ValueError(f"step must be in [0, {self.num_steps}), got {step}")
        windows = self.windows(step)
        weights, weight_sum = self._blend(step)
        prediction = torch.zeros_like(model_input, dtype=torch.float32)
        for (start, end), weight in zip(windows, weights):
            window = self.predict_window(model_input[:, :, start:end], t, slice(start, end))
            prediction[:, :, start:end] += window * weight.view(1, 1, -1, 1, 1)
            if self.on_window is not None:
                self.on_window()
        return prediction / weight_sum.view(1, 1, -1, 1, 1)
