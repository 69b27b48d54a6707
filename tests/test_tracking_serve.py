"""The web app's tracked masks without a browser: a painted first-frame mask (flow) or clicks on the subject (SAM 2)
become the region on every frame, shown over the clip before the edit runs, and the edit's command line names the
tracker and what it started from."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_sam2_tracker import REPO, write_tiny_sam2
from tiny_hub import cache_repo, offline_cache

from gen1.media import read_video, write_video
from gen1.serve.service import EditForm, canvas_click, format_clicks, parse_clicks

SIZE, FRAMES = 64, 5


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """A bright square moving right over a dark floor, 128 px (the edit reads it at 64)."""
    frames = np.full((FRAMES, 128, 128, 3), 40, np.uint8)
    frames[..., 1] = np.linspace(20, 90, 128, dtype=np.uint8)[None, :, None]
    for index in range(FRAMES):
        frames[index, 40:80, 20 + 8 * index:60 + 8 * index] = 230
    path = tmp_path_factory.mktemp("clip") / "square.mp4"
    write_video(path, frames, 8)
    return path


def _canvas(mask_left: int, mask_right: int) -> dict:
    """A drawing on the first frame's 512 px canvas (8 x the 64 px clip): paint over x in [left, right)."""
    layer = np.zeros((512, 512, 4), np.uint8)
    layer[160:320, mask_left:mask_right, 3] = 255
    return {"background": np.zeros((512, 512, 3), np.uint8), "layers": [layer], "composite": None}


def _tinted(video) -> np.ndarray:
    """Where the preview video is tinted red (the tracked region), per frame (F, H, W)."""
    frames = read_video(video).frames.astype(np.int16)
    return (frames[..., 0] - frames[..., 1] > 60) & (frames[..., 0] - frames[..., 2] > 30)


def test_a_painted_first_frame_mask_is_shown_tracked_over_the_clip(service, square):
    form = EditForm(video=str(square), size=SIZE, mask_drawing=_canvas(80, 240), mask_frame=0, mask_tracker="flow")
    tinted = _tinted(service.track_preview(form))
    assert tinted.shape == (FRAMES, SIZE, SIZE)
    # the square moves 4 px a frame at 64 px: the tinted region moves with it
    centres = [np.nonzero(frame)[1].mean() for frame in tinted]
    assert all(later > earlier + 2 for earlier, later in itertools.pairwise(centres))
    # without tracking, the same mask on every frame stays where it was painted
    still = _tinted(service.track_preview(EditForm(video=str(square), size=SIZE, mask_drawing=_canvas(80, 240))))
    assert np.array_equal(still[0], still[-1])


def test_clicks_on_the_canvas_become_source_pixels_and_the_edit_command_names_the_tracker(service, square, tmp_path,
                                                                                          monkeypatch):
    # the canvas is the 64 px clip enlarged 8x; the source is 128 px: canvas pixel 255.5 is source pixel 63.5
    assert canvas_click(str(square), (512, 512, 3), 255.5, 100.0) == pytest.approx((63.5, 24.625, True), abs=1e-6)
    clicks = format_clicks([canvas_click(str(square), (512, 512, 3), 160, 240),
                            canvas_click(str(square), (512, 512, 3), 480, 480, positive=False)])
    assert clicks == "39.6,59.6,+; 119.6,119.6,-"
    assert parse_clicks(clicks) == ((39.6, 59.6, True), (119.6, 119.6, False))
    cache = offline_cache(monkeypatch, tmp_path)
    cache_repo(cache, REPO, {"": write_tiny_sam2(tmp_path / "sam2")})
    form = EditForm(video=str(square), size=SIZE, mask_tracker="sam2", mask_clicks=clicks, prompt="red stripes",
                    num_inference_steps=1, guidance_scale=1.0)
    assert _tinted(service.track_preview(form)).shape == (FRAMES, SIZE, SIZE)
    outcome = service.edit(form)
    assert "--mask-tracker sam2 --mask-click 39.6,59.6 --mask-click 119.6,119.6,-" in outcome.command


def test_a_painted_mask_tracked_from_the_first_frame_is_in_the_command(service, square):
    form = EditForm(video=str(square), size=SIZE, mask_drawing=_canvas(80, 240), mask_frame=0, prompt="red stripes",
                    num_inference_steps=1, guidance_scale=1.0)
    assert "--mask mask.png --mask-frame 0" in service.edit(form).command


def test_a_later_frame_is_chosen_to_paint_on_and_the_mask_is_followed_from_there(service, square):
    from gen1.serve.app import mask_frame_of

    form = EditForm(video=str(square), size=SIZE)
    first, later = service.frame_canvas(form, 0), service.frame_canvas(form, 3)
    assert first.shape == later.shape == (512, 512, 3)
    bright = later.mean(axis=2) > 200  # the square of frame 3 (x 44..84 of 128 px), enlarged 4x from the source's
    columns = np.nonzero(bright.any(axis=0))[0]
    assert abs(columns.min() - 176) <= 8 and abs(columns.max() - 335) <= 8
    assert not np.array_equal(first, later)
    with pytest.raises(ValueError, match=r"^--mask-frame 5 is outside the clip \(frames 0 to 4\)$"):
        service.frame_canvas(form, 5)
    assert not list((service.workdir).glob("*/*"))  # nothing is written for a frame

    painted = dict(video=str(square), size=SIZE, mask_drawing=_canvas(176, 336), mask_tracker="flow")
    tinted = _tinted(service.track_preview(EditForm(**painted, mask_frame=3)))
    assert abs(np.nonzero(tinted[3])[1].mean() - 31.5) < 2  # where it was painted, on frame 3
    assert np.nonzero(tinted[0])[1].mean() < np.nonzero(tinted[3])[1].mean() - 6  # followed back to frame 0
    edit = service.edit(EditForm(**painted, mask_frame=3, prompt="red stripes", num_inference_steps=1,
                                 guidance_scale=1.0))
    assert "--mask mask.png --mask-frame 3" in edit.command
    # the page's choice becomes --mask-frame only for a followed mask or clicks: a painted mask of every frame has none
    assert (mask_frame_of(3.0, True, ""), mask_frame_of(3, False, "5,5"), mask_frame_of(3, False, " ")) == (3, 3, None)
    assert mask_frame_of(0, False, "", "1,1:2,2") is None  # drags on the first frame, the mask of every frame
    with pytest.raises(ValueError, match="^the drags were given on frame 3: tick 'follow the subject'"):
        mask_frame_of(3, False, "", "1,1:2,2")


@pytest.mark.parametrize("settings, message", [
    ({"mask_clicks": "12"}, "^--mask-click: a click is X,Y or X,Y,"),
    ({"mask_clicks": "500,3", "mask_tracker": "sam2"}, "^--mask-click: the click at x=500, y=3 is outside the frame"),
    ({"mask_clicks": "5,5", "mask_tracker": "flow"}, "^the flow tracker carries a painted mask"),
    ({}, "^draw or upload a mask, or click on the subject"),
])
def test_bad_tracking_input_is_one_line_on_the_page(service, square, settings, message):
    with pytest.raises(ValueError, match=message) as error:
        service.track_preview(EditForm(video=str(square), size=SIZE, **settings))
    assert "\n" not in str(error.value)


def test_the_subject_is_edited_erased_or_dragged_as_the_page_says(service, square):
    """The page's "With the subject" choice: erase (--erase, the region tracked and grown) or drag (--drag, the
    vectors from two clicks on the first frame: from, then to), each named in the command line."""
    from gen1.serve.service import add_drag_point, subject_settings

    painted = dict(video=str(square), size=SIZE, mask_drawing=_canvas(80, 240), mask_frame=0, num_inference_steps=1,
                   guidance_scale=1.0)
    erased = service.edit(EditForm(**painted, **subject_settings("erase", "10,10:20,20")))
    assert "--erase" in erased.command and "--drag" not in erased.command and "--prompt" not in erased.command
    vectors = add_drag_point(add_drag_point("", 40.04, 60.0), 80.0, 60.0)  # the square's middle, 40 px right
    assert vectors == "40.0,60.0:80.0,60.0" and add_drag_point(vectors, 1, 2) == "40.0,60.0:80.0,60.0 1.0,2.0:"
    dragged = service.edit(EditForm(**painted, **subject_settings("drag", vectors)))
    assert "--drag 40.0,60.0:80.0,60.0" in dragged.command and "--erase" not in dragged.command
    assert "Edited 5 frames" in dragged.summary
    with pytest.raises(ValueError, match="^drag: give the drag vectors"):
        subject_settings("drag", " ")
    with pytest.raises(ValueError, match="^the subject's action must be one of edit, erase, drag, got 'move'"):
        subject_settings("move", None)


def test_drags_given_by_clicks_are_drawn_as_arrows_on_the_first_frame(square):
    from gen1.serve.service import drag_arrows

    canvas = np.zeros((512, 512, 3), np.uint8)  # the 128 px source shown 4x
    drawn = drag_arrows(canvas, str(square), "40.0,60.0:80.0,60.0 10.0,10.0:")
    assert not canvas.any()  # the canvas given is not drawn on
    lit = drawn.max(axis=2) > 0
    assert lit[241, 170:310].all()  # the arrow's shaft from x = 40 to 80 (source) at y = 60, 4x on the canvas
    assert lit[40:44, 40:44].any() and not lit[400:, :].any()  # the waiting start is a dot; nothing else drawn
    assert np.array_equal(drag_arrows(canvas, str(square), "no vector"), canvas)  # a typo draws nothing


def test_choosing_a_frame_on_the_page_shows_it_and_clears_what_was_given_on_the_other(service, square):
    from gen1.serve.app import build_app

    app = build_app(service)
    slider = next(block for block in app.blocks.values() if getattr(block, "elem_id", None) == "mask-frame")
    (choose,) = [fn for fn in app.fns.values() if (slider._id, "input") in fn.targets]
    clip = [str(square), SIZE, 0.0, "", "", "", None, False, "demo", 0.0]  # the clip's fields, as the page sends them
    drawing, clicks_canvas, clicks, kept, drags = choose.fn(*clip, 3)
    shown = service.frame_canvas(EditForm(video=str(square), size=SIZE), 3)
    assert np.array_equal(drawing["background"], shown) and drawing["layers"] == []
    assert np.array_equal(clicks_canvas, shown) and np.array_equal(kept, shown) and (clicks, drags) == ("", "")


def test_the_page_builds_with_the_tracking_controls(service):
    from gen1.serve.app import build_app

    app = build_app(service)
    ids = {block.elem_id for block in app.blocks.values() if getattr(block, "elem_id", None)}
    assert {"click-canvas", "mask-clicks", "mask-tracker", "track-drawn", "track-button", "track-video",
            "subject-action", "drag-vectors", "mask-frame"} <= ids
    edit_api = next(dep for dep in app.get_config_file()["dependencies"] if dep.get("api_name") == "edit")
    inputs = [app.blocks[block_id].elem_id for block_id in edit_api["inputs"]]
    frame = next(block for block in app.blocks.values() if getattr(block, "elem_id", None) == "mask-frame")
    assert frame.maximum == service.limits.max_frames - 1  # an API call (no upload) may name any frame it can have
    # the edit takes the choice, the vectors and the frame they and the mask were given on
    assert inputs[-3:] == ["subject-action", "drag-vectors", "mask-frame"]
