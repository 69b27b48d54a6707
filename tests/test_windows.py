"""Temporal windows, blending weights, the per-step window schedule and the blender that follows it."""

from __future__ import annotations

import pytest
import torch

from gen1.eval.seams import seam_pairs
from gen1.windows import (WindowBlender, blend_schedule, blend_windows, grid_windows, shift_order, shifts_windows,
                          step_offset, temporal_windows, window_schedule, window_weights)


def test_short_video_is_one_window():
    assert temporal_windows(5, 8, 2) == [(0, 5)]
    assert temporal_windows(8, 8, 2) == [(0, 8)]


def test_two_window_crossfade_sums_to_one():
    windows = temporal_windows(14, 8, 2)
    assert windows == [(0, 8), (6, 14)]
    first, second = window_weights(windows)
    torch.testing.assert_close(first[:6], torch.ones(6))
    torch.testing.assert_close(first[6:], torch.tensor([2 / 3, 1 / 3]))
    torch.testing.assert_close(second[:2], torch.tensor([1 / 3, 2 / 3]))
    torch.testing.assert_close(first[6:] + second[:2], torch.ones(2))


def _assert_tiles(windows, frames, size, overlap):
    """Full-length windows from frame 0 to the last frame, advancing, no gaps, sharing >= overlap frames."""
    assert windows[0][0] == 0 and windows[-1][1] == frames
    assert all(end - start == min(size, frames) for start, end in windows)
    for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
        assert s0 < s1 <= e0 and e0 - s1 >= overlap


CASES = [(20, 8, 2), (48, 8, 2), (13, 4, 1), (9, 4, 3), (30, 6, 0), (11, 5, 2), (80, 16, 4), (6, 8, 2)]


@pytest.mark.parametrize("frames, size, overlap", CASES)
@pytest.mark.parametrize("shift", [True, False])
def test_the_schedule_covers_every_frame_at_every_step(frames, size, overlap, shift):
    schedule = window_schedule(frames, size, overlap, 15, shift=shift)
    assert len(schedule) == 15
    for windows in schedule:
        _assert_tiles(windows, frames, size, overlap)
        total = torch.zeros(frames)
        for (start, end), weight in zip(windows, window_weights(windows)):
            assert bool((weight > 0).all())
            total[start:end] += weight
        assert bool((total > 0).all())
    assert schedule[-1] == temporal_windows(frames, size, overlap)  # the last step is the unshifted tiling
    if not shift:
        assert all(windows == schedule[0] for windows in schedule)
    # each window's prediction is blended into frames inside it, and the blends cover every frame
    for windows, blends in zip(schedule, blend_schedule(frames, size, overlap, 15, shift=shift)):
        assert len(blends) == len(windows)
        assert all(s <= bs < be <= e for (s, e), (bs, be) in zip(windows, blends))
        covered = torch.zeros(frames)
        for (start, end), weight in zip(blends, window_weights(blends)):
            covered[start:end] += weight
        assert bool((covered > 0).all())
        if not (shift and shifts_windows(frames, size, overlap)):
            assert blends == windows  # fixed windows blend over their whole length, as before shifting


def test_a_shifted_grid_cuts_the_end_windows_and_the_model_sees_them_whole():
    assert grid_windows(48, 8, 2, offset=1)[:2] == [(0, 3), (1, 9)] and grid_windows(48, 8, 2, 1)[-1] == (43, 48)
    assert temporal_windows(48, 8, 2, offset=1)[:2] == [(0, 8), (1, 9)] and temporal_windows(48, 8, 2, 1)[-1] == (40, 48)
    assert grid_windows(48, 8, 2) == temporal_windows(48, 8, 2)[:-1] + [(42, 48)]
    assert blend_windows(48, 8, 2, step=12, num_steps=15) == grid_windows(48, 8, 2, offset=1)
    assert blend_windows(48, 8, 2, step=12, num_steps=15, shift=False) == temporal_windows(48, 8, 2)


@pytest.mark.parametrize("stride", range(1, 17))
def test_a_cycle_of_shifts_uses_every_offset_once_half_a_stride_apart(stride):
    order = shift_order(stride)
    assert sorted(order) == list(range(stride)) and order[0] == 0
    assert all(abs(b - a) >= (stride - 1) // 2 for a, b in zip(order, order[1:]))


def test_the_shifts_end_on_the_unshifted_tiling_and_spread_the_last_steps_seams():
    """Counted back from the last step: offsets 0, 3, 1, 4, 2, 5 (window 8, overlap 2), so an incomplete cycle is
    at the start, the last two steps put their seams on different frame pairs, and each complete cycle puts every
    pair at a seam equally often."""
    frames, size, overlap, steps = 48, 8, 2, 15
    assert [step_offset(step, steps, 6) for step in range(steps)] == [1, 3, 0, 5, 2, 4] * 2 + [1, 3, 0]
    at_seam = [seam_pairs(layout, frames) for layout in blend_schedule(frames, size, overlap, steps)]
    inner = range(size, frames - size)  # away from the ends, where the grid's cut windows add edges
    last, before_last = at_seam[-1], at_seam[-2]
    assert not any(last[t] and before_last[t] for t in inner) and all(last[t] or before_last[t] for t in inner)
    for cycle in (at_seam[-6:], at_seam[-12:-6]):
        assert len({sum(step[t] for step in cycle) for t in inner}) == 1


@pytest.mark.parametrize("frames, size, overlap", [(48, 8, 2), (40, 8, 2), (42, 8, 2), (80, 16, 4), (30, 6, 0)])
def test_shifted_windows_leave_no_frame_pair_at_a_seam_at_every_step(frames, size, overlap):
    """Every frame pair, the video's ends included, is inside one window's blend at some step; with fixed windows
    the pairs at their overlaps are at a seam at every step."""
    def always_at_seam(schedule):
        at_seam = [seam_pairs(windows, frames) for windows in schedule]
        return [t for t in range(frames - 1) if all(step[t] for step in at_seam)]

    assert always_at_seam(blend_schedule(frames, size, overlap, size - overlap, shift=True)) == []
    assert always_at_seam(blend_schedule(frames, size, overlap, size - overlap, shift=False)) != []
    # blended over the whole computed window, the first window would end at frame `size` at every step
    computed = always_at_seam(window_schedule(frames, size, overlap, size - overlap, shift=True))
    assert size - 1 in computed and computed == [t for t in computed if t < size or t >= frames - size - 1]


@pytest.mark.parametrize("size, overlap", [(8, 2), (16, 4), (4, 1), (6, 0), (8, 7)])
def test_shifting_costs_at_most_a_quarter_more_window_evaluations(size, overlap):
    for frames in range(1, 12 * size):
        shifted = sum(map(len, window_schedule(frames, size, overlap, 30)))
        fixed = sum(map(len, window_schedule(frames, size, overlap, 30, shift=False)))
        assert fixed <= shifted <= 1.25 * fixed
        if len(temporal_windows(frames, size, overlap)) >= 4 and overlap < size - 1:
            assert shifts_windows(frames, size, overlap)


def test_the_blender_follows_the_schedule_and_blends_convexly():
    frames, size, overlap, steps = 23, 6, 2, 7
    calls = []

    def predict(latents, t, window):
        calls.append((window.start, window.stop))
        assert latents.shape[2] == size
        return torch.full_like(latents, 3.0)

    blender = WindowBlender(predict, frames, size, overlap, num_steps=steps)
    latents = torch.zeros(1, 4, frames, 2, 2)
    for step in range(steps):
        torch.testing.assert_close(blender(latents, torch.tensor(1), step), torch.full_like(latents, 3.0))
    assert calls == [w for windows in window_schedule(frames, size, overlap, steps) for w in windows]
    assert blender.window_evaluations() == len(calls)


def test_a_window_gives_its_prediction_only_to_its_place_on_the_grid():
    frames, size, overlap = 23, 6, 2  # step 1 of 4 (offset 1): computed (0,6) (1,7) (5,11) ...; blended (0,3) (1,7) ...
    blender = WindowBlender(lambda latents, t, window: torch.full_like(latents, float(window.start)),
                            frames, size, overlap, num_steps=4)
    latents = torch.zeros(1, 1, frames, 1, 1)
    for step in range(2):
        out = blender(latents, torch.tensor(1), step)[0, 0, :, 0, 0]
        expected_numerator, expected_total = torch.zeros(frames), torch.zeros(frames)
        blends = blend_windows(frames, size, overlap, step, num_steps=4)
        for (start, _), (bs, be), ramp in zip(blender.windows(step), blends, window_weights(blends)):
            expected_numerator[bs:be] += start * ramp
            expected_total[bs:be] += ramp
        torch.testing.assert_close(out, expected_numerator / expected_total)
    assert out[3:5].tolist() == [1.0, 1.0]  # frames 3-4: only window (1,7) blends there; (0,6) is context


@pytest.mark.parametrize("size, overlap", [(0, 0), (4, 4), (4, -1), (2.5, 0)])
def test_bad_window_arguments_raise(size, overlap):
    with pytest.raises(ValueError, match="window"):
        temporal_windows(10, size, overlap)


def test_bad_offset_and_steps_raise():
    with pytest.raises(ValueError, match="offset"):
        temporal_windows(20, 8, 2, offset=6)
    with pytest.raises(ValueError, match="num_steps"):
        window_schedule(20, 8, 2, 0)
