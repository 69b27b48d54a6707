"""Temporal windows, blending weights and chunk ranges."""

from __future__ import annotations

import pytest
import torch

from gen1.windows import temporal_windows, window_weights


def test_short_video_is_one_window():
    assert temporal_windows(5, 8, 2) == [(0, 5)]
    assert temporal_windows(8, 8, 2) == [(0, 8)]


@pytest.mark.parametrize("frames, size, overlap", [(20, 8, 2), (13, 4, 1), (9, 4, 3), (30, 6, 0), (11, 5, 2)])
def test_windows_cover_all_frames_with_full_length(frames, size, overlap):
    windows = temporal_windows(frames, size, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == frames
    assert all(end - start == size for start, end in windows)
    for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
        assert s1 > s0 and s1 <= e0  # advance, no gaps
        assert e0 - s1 >= overlap
    # weights partition the frames: positive everywhere, blended sum normalises to 1
    total = torch.zeros(frames)
    for (start, end), weight in zip(windows, window_weights(windows)):
        assert weight.shape == (end - start,) and bool((weight > 0).all())
        total[start:end] += weight
    assert bool((total > 0).all())


def test_two_window_crossfade_sums_to_one():
    windows = temporal_windows(14, 8, 2)
    assert windows == [(0, 8), (6, 14)]
    first, second = window_weights(windows)
    torch.testing.assert_close(first[:6], torch.ones(6))
    torch.testing.assert_close(first[6:], torch.tensor([2 / 3, 1 / 3]))
    torch.testing.assert_close(second[:2], torch.tensor([1 / 3, 2 / 3]))
    torch.testing.assert_close(first[6:] + second[:2], torch.ones(2))


@pytest.mark.parametrize("size, overlap", [(0, 0), (4, 4), (4, -1), (2.5, 0)])
def test_bad_window_arguments_raise(size, overlap):
    with pytest.raises(ValueError, match="window"):
        temporal_windows(10, size, overlap)
