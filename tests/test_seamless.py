"""Seamless compositing of an erase's redrawn region (gen1.seamless): a colour cast is taken out, the drawing's own
detail is kept, the correction is smooth and averaged over neighbouring frames, and nothing outside the region
changes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gen1.masking import KeptRegion
from gen1.seamless import SeamAnchor, blend_seamlessly, seam_correction, smooth_in_time

SIZE = 24


def _region(num_frames=3):
    region = torch.zeros(num_frames, 1, SIZE, SIZE)
    region[:, :, 6:18, 5:15] = 1
    return region


def test_a_colour_cast_on_a_plain_surrounding_is_taken_out_and_the_outside_is_kept_bit_for_bit():
    kept = torch.tensor([0.9, 0.85, 0.8])[None, :, None, None].expand(3, 3, SIZE, SIZE).clone()
    region = _region()
    edited = torch.where(region > 0.5, kept + torch.tensor([0.05, -0.1, 0.08])[None, :, None, None], kept)
    blended = blend_seamlessly(edited, kept, region, reach=0)
    torch.testing.assert_close(blended, kept, rtol=0, atol=1e-6)
    textured = kept + 0.05 * torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    outside = (region < 0.5).expand_as(kept)
    assert torch.equal(blend_seamlessly(edited, textured, region)[outside], edited[outside])


@pytest.mark.parametrize("rows, cols", [(slice(16, 24), slice(0, 24)),  # a band along the bottom, full width
                                        (slice(0, 24), slice(0, 9)),  # a band along the left, full height
                                        (slice(0, 10), slice(14, 24)),  # a corner
                                        (slice(3, 24), slice(0, 24))])  # all but a strip at the top
def test_a_colour_cast_is_taken_out_where_the_region_meets_the_frame_border(rows, cols):
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    kept = torch.stack([0.3 + 0.01 * xs, 0.6 - 0.01 * ys, torch.full_like(xs, 0.5)])[None].expand(2, -1, -1, -1)
    region = torch.zeros(2, 1, SIZE, SIZE)
    region[:, :, rows, cols] = 1
    edited = torch.where(region > 0.5, kept + 0.1, kept)  # the drawing: the right surface, a cast over it
    blended = blend_seamlessly(edited, kept, region)
    error = (blended - kept)[(region > 0.5).expand_as(kept)].abs()
    assert float(error.max()) < 0.02, float(error.max())  # the cast (0.1) is gone, nothing blows up at the border


def test_a_frame_the_region_covers_whole_is_left_as_drawn():
    kept = torch.full((3, 3, SIZE, SIZE), 0.8)
    region = _region(3)
    region[1] = 1  # nothing kept on frame 1: nothing to meet there
    edited = torch.where(region > 0.5, torch.full_like(kept, 0.6), kept)
    blended = blend_seamlessly(edited, kept, region, reach=0)
    assert torch.equal(blended[1], edited[1])
    torch.testing.assert_close(blended[0], kept[0], rtol=0, atol=1e-6)


def test_the_correction_is_smooth_so_the_drawing_keeps_its_detail():
    generator = torch.Generator().manual_seed(1)
    kept = torch.rand(1, 3, SIZE, SIZE, generator=generator)
    drawing = 0.4 + 0.2 * torch.rand(1, 3, SIZE, SIZE, generator=generator)  # detail and a cast of its own
    region = _region(1)
    edited = torch.where(region > 0.5, drawing, kept)
    correction = seam_correction(edited, kept, region)
    interior = F.max_pool2d(1 - region, 3, stride=1, padding=1) < 0.5  # no neighbour outside the region
    laplacian = 4 * correction - F.pad(correction, (1, 1, 1, 1))[..., :-2, 1:-1] \
        - F.pad(correction, (1, 1, 1, 1))[..., 2:, 1:-1] - F.pad(correction, (1, 1, 1, 1))[..., 1:-1, :-2] \
        - F.pad(correction, (1, 1, 1, 1))[..., 1:-1, 2:]
    assert float(laplacian[interior.expand_as(laplacian)].abs().max()) < 1e-6  # harmonic: no detail of its own
    assert float(correction[interior.expand_as(correction)].abs().max()) > 0.01  # and it does correct
    blended = blend_seamlessly(edited, kept, region, reach=0)  # the drawing plus that smooth field
    torch.testing.assert_close(blended - edited, correction.float(), rtol=0, atol=1e-6)


def test_a_cast_that_flickers_from_frame_to_frame_is_averaged_over_the_neighbouring_frames():
    kept = torch.full((5, 3, SIZE, SIZE), 0.5)
    region = _region(5)
    casts = torch.tensor([0.1, -0.1, 0.1, -0.1, 0.1])[:, None, None, None]
    edited = torch.where(region > 0.5, kept + casts, kept)
    per_frame = blend_seamlessly(edited, kept, region, reach=0)
    torch.testing.assert_close(per_frame, kept, rtol=0, atol=1e-6)  # each frame's cast taken out on its own
    correction = seam_correction(edited, kept, region)
    smoothed = smooth_in_time(correction, region, reach=2)
    inside = (region[2] > 0.5).expand(3, -1, -1)
    # frame 2's correction: weights 1, 2, 3, 2, 1 over corrections -0.1, 0.1, -0.1, 0.1, -0.1
    expected = (-0.1 * 1 + 0.1 * 2 - 0.1 * 3 + 0.1 * 2 - 0.1 * 1) / 9
    torch.testing.assert_close(smoothed[2][inside], torch.full_like(smoothed[2][inside], expected), rtol=0,
                               atol=1e-6)
    # a frame whose region does not cover a pixel gives that pixel nothing
    moved = region.clone()
    moved[1] = 0
    moved[1, :, 0:4, 0:4] = 1
    smoothed = smooth_in_time(seam_correction(edited, kept, moved), moved, reach=1)
    torch.testing.assert_close(smoothed[0][(moved[0] > 0.5).expand(3, -1, -1)],
                               torch.full((3 * 12 * 10,), -0.1), rtol=0, atol=1e-6)


def test_a_drag_meets_only_the_anchor_pixels_and_not_the_moved_subject_beside_its_old_place():
    kept = torch.full((1, 3, SIZE, SIZE), 0.8)  # the surroundings
    subject = torch.zeros(1, 1, SIZE, SIZE)
    subject[:, :, 6:18, 15:20] = 1  # the moved subject, kept, right beside the old place
    kept = torch.where(subject > 0.5, torch.full_like(kept, 0.1), kept)
    region = _region(1)  # the old place, columns 5-14
    edited = torch.where(region > 0.5, torch.full_like(kept, 0.6), kept)
    anchored = blend_seamlessly(edited, kept, region, anchor=SeamAnchor(1 - region - subject))
    plain = blend_seamlessly(edited, kept, region)
    inside = (region > 0.5).expand_as(kept)
    assert float(anchored[inside].min()) >= 0.6 - 1e-6  # pulled only up towards the light surroundings
    assert float(anchored[inside].max()) <= 0.8 + 1e-6
    assert float(plain[inside].min()) < 0.5  # meeting every kept pixel drags the dark subject's colour in


def test_a_drags_new_margin_meets_the_moved_subject_and_its_old_place_only_the_surroundings():
    kept = torch.full((1, 3, SIZE, SIZE), 0.8)  # the surroundings
    subject = torch.zeros(1, 1, SIZE, SIZE)
    subject[:, :, 6:18, 15:19] = 1  # the moved subject, kept, between the old place and its drawn margin
    kept = torch.where(subject > 0.5, torch.full_like(kept, 0.1), kept)
    old = _region(1)  # the old place, columns 5-14
    margin = torch.zeros(1, 1, SIZE, SIZE)
    margin[:, :, 6:18, 19:22] = 1  # the new place's drawn margin, right of the subject
    region = old + margin
    edited = torch.where(region > 0.5, torch.full_like(kept, 0.6), kept)
    outside = 1 - region - subject
    blended = blend_seamlessly(edited, kept, region, reach=0, anchor=SeamAnchor(outside, old))
    in_old, in_margin = (old > 0.5).expand_as(kept), (margin > 0.5).expand_as(kept)
    torch.testing.assert_close(blended[in_old], torch.full_like(blended[in_old], 0.8))  # the surroundings, on
    beside = blended[:, :, 10, 19]  # the margin's column beside the subject meets it
    assert float(beside.max()) < 0.5 and float(blended[in_margin].max()) <= 0.8 + 1e-6
    only_anchor = blend_seamlessly(edited, kept, region, reach=0, anchor=SeamAnchor(outside))  # the whole region: old place's
    assert float(only_anchor[:, :, 10, 19].min()) > 0.6  # no part meets the subject then


def test_an_erase_composite_is_seamless_and_a_plain_masked_edit_is_not():
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 8:24] = 1
    kwargs = dict(source_latents=torch.zeros(1, 4, 2, 4, 4), noise=torch.zeros(1, 4, 2, 4, 4), scheduler=None,
                  timesteps=torch.zeros(1), cover=True)
    source = torch.full((2, 3, 32, 32), 0.8)
    drawn = torch.full((2, 3, 32, 32), 0.6)  # a grey cast over a light surrounding
    erase = KeptRegion.from_pixel_mask(mask, (32, 32), (4, 4), 1.0, seamless=True, **kwargs).composite(drawn, source)
    plain = KeptRegion.from_pixel_mask(mask, (32, 32), (4, 4), 1.0, **kwargs).composite(drawn, source)
    torch.testing.assert_close(erase, source, rtol=0, atol=1e-6)
    assert torch.equal(plain[mask.expand_as(plain) > 0.5], drawn[mask.expand_as(drawn) > 0.5])


def test_a_replaces_uncovered_background_is_seamless_and_its_new_object_keeps_its_drawing():
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 8:24] = 1  # the old subject's place
    new_object = torch.zeros(2, 1, 32, 32)
    new_object[:, :, 10:18, 10:16] = 1  # what the given depth puts there: a smaller object
    kwargs = dict(source_latents=torch.zeros(1, 4, 2, 4, 4), noise=torch.zeros(1, 4, 2, 4, 4), scheduler=None,
                  timesteps=torch.zeros(1), cover=True, seamless=True)
    source = torch.full((2, 3, 32, 32), 0.8)
    drawn = torch.where(new_object > 0.5, torch.full_like(source, 0.1), torch.full_like(source, 0.6))
    anchor = SeamAnchor(1 - mask, redrawn=mask * (1 - new_object))
    out = KeptRegion.from_pixel_mask(mask, (32, 32), (4, 4), 1.0, seam_anchor=anchor, **kwargs).composite(drawn, source)
    uncovered, kept_object = (anchor.redrawn > 0.5).expand_as(out), (new_object > 0.5).expand_as(out)
    # the background's cast is taken out (it meets the surroundings, the new object a mirror beside it)...
    torch.testing.assert_close(out[uncovered], source[uncovered], rtol=0, atol=1e-6)
    assert torch.equal(out[kept_object], drawn[kept_object])  # ...and the new object is as drawn
    assert torch.equal(out[mask.expand_as(out) < 0.5], source[mask.expand_as(out) < 0.5])


def test_a_frame_the_region_covers_whole_does_not_weaken_its_neighbours_correction():
    # a replace may mask a whole frame (an erase may not): its zero correction was averaged into its neighbours'
    kept = torch.full((5, 3, SIZE, SIZE), 0.8)
    region = _region(5)
    region[2] = 1
    edited = torch.where(region > 0.5, torch.full_like(kept, 0.6), kept)
    blended = blend_seamlessly(edited, kept, region)
    for frame in (0, 1, 3, 4):
        inside = (region[frame] > 0.5).expand_as(kept[frame])
        torch.testing.assert_close(blended[frame][inside], kept[frame][inside], rtol=0, atol=1e-6)
    shared = (_region(1)[0] > 0.5).expand_as(kept[2])  # where its neighbours have a correction, it takes theirs
    torch.testing.assert_close(blended[2][shared], kept[2][shared], rtol=0, atol=1e-6)


def test_mismatched_shapes_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^edited \(2, 3, 8, 8\), kept \(2, 3, 8, 9\)") as error:
        blend_seamlessly(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 9), torch.zeros(2, 1, 8, 8))
    assert "\n" not in str(error.value)
