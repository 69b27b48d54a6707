"""Overlapping temporal windows for videos longer than the model's clip length, and their blending weights.

A step on a long video evaluates the UNet on one window of frames at a time (so memory depends on the window,
not on the video length) and blends the windows' noise predictions frame by frame:

* :func:`temporal_windows` tiles ``num_frames`` with windows of ``window_size`` frames whose starts advance by
  ``window_size - overlap``; the last window is moved back to end on the last frame, so every window has the
  full length the model was trained on (it may then overlap its neighbour by more than ``overlap``).
* :func:`window_weights` gives each window a trapezoid: weight 1 inside, a linear ramp
  ``1/(o+1), 2/(o+1), ..., o/(o+1)`` over each of the ``o`` frames it shares with a neighbour, and no ramp at the
  video's own first and last frame. Where two windows overlap their ramps sum to exactly 1 (a linear
  cross-fade), so there is no seam; the pipeline still divides by the summed weights, which keeps the blend a
  convex combination when three windows meet.

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


def temporal_windows(num_frames: int, window_size: int, overlap: int) -> list[tuple[int, int]]:
    """Return ``[(start, end), ...]`` half-open frame ranges covering ``range(num_frames)``.

    A video no longer than ``window_size`` is one window. Starts advance by ``window_size - overlap`` and the
    last window is aligned to the end of the video.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    check_window_arguments(window_size, overlap)
    if num_frames <= window_size:
        return [(0, num_frames)]
    stride = window_size - overlap
    starts = list(range(0, num_frames - window_size, stride)) + [num_frames - window_size]
    return [(start, start + window_size) for start in starts]


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


class WindowBlender:
    """A model function over the whole video made from a prediction over one window at a time.

    Each call evaluates ``predict_window`` on every window of :func:`temporal_windows` and blends the windows'
    predictions frame by frame with :func:`window_weights`, divided by the summed weights (a convex
    combination wherever windows meet). ``on_window`` is called after each window (progress bars).
    """

    def __init__(
        self,
        predict_window: WindowPrediction,
        num_frames: int,
        window_size: int,
        overlap: int,
        *,
        device: torch.device | str | None = None,
        on_window: Callable[[], None] | None = None,
    ):
        self.predict_window = predict_window
        self.windows = temporal_windows(num_frames, window_size, overlap)
        self.weights = [weight.to(device) for weight in window_weights(self.windows)]
        self.weight_sum = torch.zeros(num_frames, device=device)
        for (start, end), weight in zip(self.windows, self.weights):
            self.weight_sum[start:end] += weight
        self.on_window = on_window

    def __len__(self) -> int:
        return len(self.windows)

    def __call__(self, model_input: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The blended prediction for ``model_input`` ``(B, C, F, h, w)``: float32, same shape."""
        prediction = torch.zeros_like(model_input, dtype=torch.float32)
        for (start, end), weight in zip(self.windows, self.weights):
            window = self.predict_window(model_input[:, :, start:end], t, slice(start, end))
            prediction[:, :, start:end] += window * weight.view(1, 1, -1, 1, 1)
            if self.on_window is not None:
                self.on_window()
        return prediction / self.weight_sum.view(1, 1, -1, 1, 1)
