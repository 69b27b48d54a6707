"""Drag a subject (docs/drag.md): the depth warp lands exactly and keeps the occlusion order, the uncovered place is
filled, several vectors give a similarity or an affine map, a drag on one frame follows the subject's own motion, the
edit keeps every pixel outside the old and new places exact on both routes, and bad drags are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gen1.depth.warp import composite_nearer, warp_layer
from gen1.drag import Drag, DragVector, drag_layers, fit_transform, parse_drag, scale_drag
from gen1.masked_edits import erase_margin, grow
from tiny_pipeline import tiny_pipeline

FRAMES, SIZE = 3, 32
FLOOR, SUBJECT = 0.2, 0.6


def floor(num_frames=FRAMES, size=SIZE):
    """A floor's inverse depth, affine in the image (so the erase's fill restores it exactly)."""
    rows = torch.arange(size, dtype=torch.float32)[:, None].expand(size, size)
    return (FLOOR + 0.004 * rows).expand(num_frames, 1, size, size).clone()


def square_scene(x=6, y=10, side=6, step=(0, 0), num_frames=FRAMES, size=SIZE):
    """Floor depth with a nearer square (inverse depth 0.6) at (x, y), moving by ``step`` per frame; its masks."""
    depth = floor(num_frames, size)
    masks = torch.zeros(num_frames, 1, size, size)
    for index in range(num_frames):
        left, top = x + step[0] * index, y + step[1] * index
        depth[index, :, top:top + side, left:left + side] = SUBJECT
        masks[index, :, top:top + side, left:left + side] = 1
    return depth, masks


def shifted(masks, dx, dy):
    return torch.roll(masks, shifts=(dy, dx), dims=(-2, -1))


# --------------------------------------------------------------------------------------------- the warp
def test_a_square_moved_by_a_vector_lands_exactly_and_its_old_place_is_filled():
    depth, masks = square_scene()
    layers = drag_layers(depth, masks, parse_drag("8,12:17,15"), (SIZE, SIZE))  # (dx, dy) = (9, 3)
    moved = shifted(masks, 9, 3)
    assert torch.equal(layers.moved, moved)
    assert torch.equal(layers.depth[moved > 0.5], torch.full_like(layers.depth[moved > 0.5], SUBJECT))
    uncovered = (masks > 0.5) & (moved < 0.5)
    torch.testing.assert_close(layers.depth[uncovered], floor()[uncovered], atol=1e-6, rtol=0)  # the floor again
    assert torch.equal(layers.depth[(masks < 0.5) & (moved < 0.5)], depth[(masks < 0.5) & (moved < 0.5)])
    margin = erase_margin((SIZE, SIZE))
    assert torch.equal(layers.union, ((grow(masks, margin) + grow(moved, margin)) > 0).float())
    assert torch.equal(layers.region, layers.union * (1 - moved))  # the moved subject's pixels are kept
    assert torch.equal(drag_layers(depth, masks, parse_drag("8,12:17,15"), (SIZE, SIZE), keep_subject=False).region,
                       layers.union)


def test_a_subject_landing_behind_a_nearer_object_stays_hidden_and_covers_a_farther_one():
    depth, masks = square_scene()
    depth[:, :, 8:20, 18:21] = 0.9  # a nearer pole where the square's right part lands
    depth[:, :, 8:20, 24:27] = 0.4  # a farther pole, nearer than the floor, farther than the square
    layers = drag_layers(depth, masks, parse_drag("8,12:22,12"), (SIZE, SIZE))  # dx = 14: columns 20 to 25
    landed = shifted(masks, 14, 0) > 0.5
    assert bool((layers.depth[:, :, 10:16, 20:21] == 0.9).all())  # the nearer pole stays in front
    assert not bool(layers.moved[:, :, :, 18:21].any())
    assert bool((layers.depth[:, :, 10:16, 24:26] == SUBJECT).all())  # the square covers the farther pole
    assert torch.equal(layers.moved > 0.5, landed & (depth <= SUBJECT))


def test_a_subject_mostly_hidden_where_it_lands_is_said_in_a_warning():
    # a user found the swan's head missing after a long drag, without a word: the z-test had hidden it
    import warnings

    depth, masks = square_scene()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drag_layers(depth, masks, parse_drag("8,12:22,12"), (SIZE, SIZE))  # lands in the open: no warning
    depth[:, :, 6:24, 19:24] = 0.9  # a nearer wall over 4 of the 6 columns where it lands (20 to 25)
    with pytest.warns(UserWarning, match=r"^the moved subject is hidden behind nearer things on 67% of its pixels"):
        drag_layers(depth, masks, parse_drag("8,12:22,12"), (SIZE, SIZE))


def test_warp_layer_and_the_z_test_on_their_own():
    values = torch.zeros(1, 1, 8, 8)
    values[0, 0, 2:4, 2:4] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = (values > 0).float()
    transform = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]]])
    moved, landed = warp_layer(values, mask, transform)
    assert torch.equal(moved[0, 0, 0:2, 5:7], values[0, 0, 2:4, 2:4]) and int(landed.sum()) == 4
    background = torch.full((1, 1, 8, 8), 0.5)
    composite, visible = composite_nearer(background, moved / 8, landed)  # 0.125 .. 0.5: only the 0.5 wins
    assert int(visible.sum()) == 1 and float(composite[0, 0, 1, 6]) == 0.5
    assert torch.equal(composite_nearer(background, moved / 8, landed, tolerance=0.4)[1], landed)


def test_two_vectors_give_the_similarity_through_both_and_three_the_affine_map():
    starts = torch.tensor([[10.0, 10.0], [20.0, 10.0]])
    turned = fit_transform(starts, torch.tensor([[10.0, 10.0], [10.0, 20.0]]))  # a quarter turn about (10, 10)
    torch.testing.assert_close(turned, torch.tensor([[0.0, -1.0, 20.0], [1.0, 0.0, 0.0]], dtype=torch.float64))
    truth = torch.tensor([[2.0, 0.5, -3.0], [0.0, 1.5, 4.0]], dtype=torch.float64)
    starts = torch.tensor([[4.0, 5.0], [20.0, 7.0], [9.0, 25.0], [15.0, 15.0]], dtype=torch.float64)
    ends = starts @ truth[:, :2].T + truth[:, 2]
    torch.testing.assert_close(fit_transform(starts, ends), truth)


def test_a_scaled_subject_is_warped_without_holes():
    depth, masks = square_scene(x=4, y=4, side=6, num_frames=1)
    # two vectors from the square's corners: twice its size, its top-left corner kept
    layers = drag_layers(depth, masks, parse_drag(["4,4:4,4", "9,9:14,14"]), (SIZE, SIZE))
    # pixel i covers [i - 0.5, i + 0.5]: the square covers [3.5, 9.5], twice as large about 4 that is [3, 15]
    assert int(layers.moved.sum()) == 12 * 12 and bool((layers.moved[0, 0, 3:15, 3:15] > 0.5).all())
    assert bool((layers.depth[0, 0, 3:15, 3:15] == SUBJECT).all())


def test_a_drag_on_one_frame_follows_the_subjects_own_motion_on_every_frame():
    depth, masks = square_scene(x=4, y=6, side=6, step=(3, 2), num_frames=4)
    layers = drag_layers(depth, masks, parse_drag("10,10:10,20"), (SIZE, SIZE), drag_frame=1)  # start on frame 1
    assert torch.equal(layers.moved, shifted(masks, 0, 10))
    # a turn given on frame 0 turns every frame's square about its own centre: still a 6x6 square, offset as given
    turned = drag_layers(depth, masks, parse_drag(["4,6:14,6", "9,6:14,11"]), (SIZE, SIZE))
    for index in range(4):
        rows, cols = torch.nonzero(turned.moved[index, 0], as_tuple=True)
        assert int(turned.moved[index].sum()) == 36
        assert (int(cols.min()) - 4 - 3 * index, int(rows.min()) - 6 - 2 * index) == (5, 0)


def test_a_track_file_gives_every_frame_its_own_vector(tmp_path):
    depth, masks = square_scene(num_frames=2)
    track = tmp_path / "track.json"
    track.write_text(json.dumps([["8,12:10,12"], [[8, 12, 8, 16]]]))
    layers = drag_layers(depth, masks, parse_drag(str(track)), (SIZE, SIZE))
    assert torch.equal(layers.moved[0], shifted(masks, 2, 0)[0]) and torch.equal(layers.moved[1],
                                                                                  shifted(masks, 0, 4)[1])
    csv_track = tmp_path / "track.csv"
    csv_track.write_text("frame,x0,y0,x1,y1\n0,8,12,10,12\n1,8,12,8,16\n")
    assert parse_drag([str(csv_track)]) == parse_drag(str(track))


def test_one_drag_written_as_numbers_is_one_vector():
    # drag=(430, 260, 330, 270) was split into four "vectors" and refused ("got 430")
    one = parse_drag("430,260:330,270")
    assert parse_drag((430, 260, 330, 270)) == parse_drag(((430, 260), (330, 270))) == parse_drag(
        [np.float32(430), 260, 330, 270.0]) == one
    assert parse_drag([(430, 260, 330, 270), "1,2:3,4"]) == parse_drag(["430,260:330,270", "1,2:3,4"])
    assert parse_drag(np.array([430, 260, 330, 270])) == parse_drag(torch.tensor([[430, 260], [330, 270]])) == one
    assert parse_drag(np.array([[430, 260, 330, 270], [1, 2, 3, 4]])) == parse_drag(["430,260:330,270", "1,2:3,4"])
    with pytest.raises(ValueError, match=r"^drag as numbers is four, x0, y0, x1, y1 .*, got 3: \[1, 2, 3\]$"):
        parse_drag(np.array([1, 2, 3]))  # it said "got 1"


def test_drag_vectors_given_in_the_files_pixels_are_brought_to_the_read_size():
    drag = Drag(((DragVector(0, 0, 511, 255.5),),))
    scaled = scale_drag(drag, (512, 512), (32, 32)).vectors[0][0]
    assert (scaled.x0, scaled.y0, scaled.x1, scaled.y1) == pytest.approx((-15 / 32, -15 / 32, 31.46875, 15.5))


# --------------------------------------------------------------------------------------------- through the pipeline
def _frames_of(masks, seed=0):
    generator = torch.Generator().manual_seed(seed)
    background = torch.nn.functional.avg_pool2d(torch.rand(1, 3, SIZE, SIZE, generator=generator), 5, 1, 2)
    return torch.where(masks > 0.5, torch.tensor([0.9, 0.2, 0.1])[None, :, None, None], background)


def _edit(pipe, frames, **kwargs):
    kwargs = {"num_inference_steps": 2, **kwargs}
    return pipe(frames, generator=torch.Generator().manual_seed(0), output_type="pt", size=SIZE, **kwargs)


@pytest.mark.parametrize("route", ["native", "public"])
def test_a_drag_keeps_every_pixel_outside_the_old_and_new_places_exact(route, request):
    pipe = request.getfixturevalue(route)
    depth, masks = square_scene(step=(1, 0))
    frames = _frames_of(masks)
    out = _edit(pipe, frames, mask=masks[0, 0].numpy(), mask_frame=0, drag=["8,12:18,14"], depth=depth)
    layers = drag_layers(depth, masks, parse_drag("8,12:18,14"), (SIZE, SIZE))
    outside = (layers.union < 0.5).expand_as(frames)
    assert torch.equal(out.frames[outside], frames[outside])
    assert not torch.equal(out.frames[~outside], frames[~outside])
    new_place = shifted(masks, 10, 2) > 0.5
    # the subject's own pixels, moved, where it is now (gen1.drag.KEEP_SUBJECT)
    assert torch.equal(out.frames[new_place.expand_as(frames)], shifted(frames, 10, 2)[new_place.expand_as(frames)])
    assert float(out.depth[new_place].mean()) > 0.5  # the edit is guided by the subject's depth at its new place
    assert float(out.depth[(masks > 0.5) & ~new_place].mean()) < 0.35  # and by the floor where it was


def test_a_drag_starts_from_the_moved_source_at_its_drag_strength(native, monkeypatch):
    from gen1.drag import DRAG_STRENGTH, moved_frames
    from gen1.masked_edits import hidden_background

    depth, masks = square_scene(step=(2, 1))  # moving: other frames see some of its old place
    frames = _frames_of(masks)
    encoded, steps = [], []
    original = type(native.route).encode_source
    monkeypatch.setattr(type(native.route), "encode_source",
                        lambda self, video, **kwargs: encoded.append(video) or original(self, video, **kwargs))
    layers = drag_layers(depth, masks, parse_drag("8,12:18,14"), (SIZE, SIZE))

    def count(pipe, index, t, tensors):
        steps.append(int(t))
        return tensors

    for drag_strength, expected in ((None, int(10 * DRAG_STRENGTH)), (0.5, 5), (1.0, 10)):
        encoded.clear()
        steps.clear()
        _edit(native, frames, mask=masks[:, 0].numpy(), drag="8,12:18,14", depth=depth, num_inference_steps=10,
              drag_strength=drag_strength, callback_on_step_end=count)
        assert len(steps) == expected
        assert len(encoded) == 1 and torch.equal(encoded[0], moved_frames(frames, layers))
    assert not torch.equal(encoded[0], frames)  # the subject is at its new place, its old place filled
    encoded.clear()  # the old place filled from its boundary only
    _edit(native, frames, mask=masks[:, 0].numpy(), drag="8,12:18,14", depth=depth, erase_fill="boundary")
    assert torch.equal(encoded[0], moved_frames(frames, layers, "boundary"))
    assert bool(hidden_background(frames, layers.old_place, None).seen.any())
    assert not torch.equal(encoded[0], moved_frames(frames, layers))


@pytest.mark.parametrize("kwargs, message", [
    (dict(drag="3,3:9,9"), r"^drag needs mask \(the subject to move\)"),
    (dict(drag="40,12:10,12", mask_frame=0), r"^drag 40,12:10,12: its start 40,12 is outside the frame"),
    (dict(drag="8,12:10,-3", mask_frame=0), r"^drag 8,12:10,-3: its end 10,-3 is outside the frame"),
    (dict(drag="8,12>10,12", mask_frame=0), "^drag must be X0,Y0:X1,Y1"),
    (dict(drag="25,25:10,12", mask_frame=0), r"^drag 25,25:10,12: its start 25,25 is not on the subject"),
    (dict(drag=["8,12:9,12", "8,12:10,12"], mask_frame=0), "^drag 8,12:9,12 8,12:10,12: two drags start at the "
     "same point"),
    (dict(drag=["7,11:9,12", "8,12:10,12", "9,13:11,14"], mask_frame=0), "^drag 7,11:9,12 8,12:10,12 9,13:11,14: the "
     "starts of three or more drags lie on one line"),
    (dict(drag="8,12:8,12", mask_frame=0), r"^drag 8,12:8,12: moves nothing \(every start is its end\)"),
    (dict(drag=["8,12:8,12", "10,12:26,12"], mask_frame=0),
     r"^drag 8,12:8,12 10,12:26,12: scales the subject by 9x along one direction; a drag moves, turns and scales it "
     r"by at most 4x or 1/4"),
    (dict(drag=["8,12:8,12", "11,12:8.25,12"], mask_frame=0), r"^drag 8,12:8,12 11,12:8.25,12: scales the subject by "
     r"0.0833x along one direction"),
    (dict(drag="8,12:10,12", mask_frame=0, erase=True), "^drag moves the subject and erase removes it"),
    (dict(drag="8,12:10,12", mask_frame=0, mask_structure="fill"),
     "^drag makes the structure inside mask itself: give no mask_structure"),
    (dict(drag=["x.json"], mask_frame=0), "^drag track file not found"),
    (dict(drag="8,12:10,12", mask_frame=0, strength=0.5), "^drag starts from the clip with the subject moved, at "
     "drag_strength: leave strength at 1 and give drag_strength"),
    (dict(drag="8,12:10,12", mask_frame=0, drag_strength=0.0), "^drag_strength must be"),
    (dict(drag_strength=0.5), "^drag_strength is a drag's"),
])
def test_bad_drags_are_refused_in_one_line(native, kwargs, message):
    depth, masks = square_scene()
    frames = _frames_of(masks)
    mask = None if kwargs.get("drag") == "3,3:9,9" else masks[0, 0].numpy()
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        _edit(native, frames, mask=mask, depth=depth, **kwargs)
    assert "\n" not in str(error.value)


def test_a_drag_into_the_part_the_edit_crops_away_is_refused_in_python_too(native):
    # gen1 edit refused it; pipe(...) took it and moved the subject off the edited frames (a 64x48 clip edited at
    # short side 32 is cut to 40x32 about its centre: source columns 0-3 and 60-63 are cropped away)
    _, masks = square_scene(x=24, y=20, side=8, size=64)
    masks = masks[..., 8:56, :]
    frames = torch.where(masks > 0.5, torch.tensor([0.9, 0.2, 0.1])[None, :, None, None], torch.full((3, 48, 64), 0.4))
    mask = masks[0, 0].numpy()
    with pytest.raises(ValueError, match=r"^drag 28,16:62,16: its end 62,16 is in the part of the video cropped away "
                                         r"\(the frames are cut to 40x32 about their centre\)"):
        native(frames, mask=mask, mask_frame=0, drag="28,16:62,16", size=32, num_inference_steps=1)


def test_a_track_with_another_frame_count_is_refused(native, tmp_path):
    depth, masks = square_scene()
    track = tmp_path / "track.csv"
    track.write_text("0,8,12,10,12\n1,8,12,10,12\n")
    with pytest.raises(ValueError, match=f"^drag: the track has 2 frames but the clip has {FRAMES}$"):
        _edit(native, _frames_of(masks), mask=masks[:, 0].numpy(), depth=depth, drag=str(track))


# --------------------------------------------------------------------------------------------- the command line
def test_gen1_edit_drag_end_to_end(clips_dir, tmp_path, capsys):
    from PIL import Image

    from gen1.cli import main
    from gen1.media import read_video

    model = tmp_path / "tiny-gen1"
    tiny_pipeline(max_frames=4).save_pretrained(model)
    mask = np.zeros((512, 512), np.uint8)
    mask[192:320, 192:320] = 255  # wolf.mp4 is 512x512
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.mp4"
    args = ["edit", str(clips_dir / "wolf.mp4"), "-o", str(out), "--model", str(model), "--size", "32",
            "--max-frames", "3", "--steps", "2", "--mask", str(tmp_path / "mask.png"), "--mask-frame", "0"]
    assert main([*args, "--drag", "256,256:384,300"]) == 0
    assert read_video(out).frames.shape == (3, 32, 32, 3)
    for bad, line in ((["--drag", "256,256:600,300"], ("--drag 256,256:600,300: its end 600,300 is outside the "
                                                       "frame (columns 0 to 511, rows 0 to 511)")),
                      (["--drag", "256:384"], "--drag must be X0,Y0:X1,Y1"),
                      (["--drag", "10,10:100,100"],  # the user's own pixels, not the edit size's
                       "--drag 10,10:100,100: its start 10,10 is not on the subject on frame 0 (the mask)"),
                      (["--drag", "256,256:384,300", "--mask-frame", "3"],
                       "--mask-frame 3 is outside the clip (frames 0 to 2)"),
                      (["--drag", "256,256:384,300", "--strength", "0.5"],
                       "--drag starts from the clip with the subject moved, at --drag-strength: leave --strength at 1 "
                       "and give --drag-strength"),
                      (["--drag-strength", "0.5"], "--drag-strength is a drag's start: give --drag"),
                      (["--erase-fill", "boundary"], "--erase-fill is an erase's or a drag's: give --erase or --drag"),
                      (["--erase", "--strength", "0.5"], "--erase starts from its pre-filled region at --erase-strength: "
                       "leave --strength at 1 and give --erase-strength")):
        assert main([*args, *bad]) == 2
        assert line in capsys.readouterr().err
    assert main(["edit", str(clips_dir / "wolf.mp4"), "-o", str(out), "--model", str(model), "--drag", "1,1:2,2"]) == 2
    assert "--drag needs --mask (the subject to move)" in capsys.readouterr().err
