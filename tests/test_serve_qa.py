"""gen1 serve's answers to a QA pass over the web app, without a browser: the drag field takes vectors only, the
previews' files belong to their page's session, the tracked-mask preview of an erase, the page after a failed
edit, the API's numbers, the chosen frame and the painting after the clip's settings change, the preview of a
subject given on a later frame, and SAM 2 clicks on a server without SAM 2."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from gradio.helpers import special_args

from gen1.media import write_video
from gen1.serve.app import build_app, mask_frame_of
from gen1.serve.service import EditService, ServeLimits
from serve_helpers import clip_with_audio, edit_form as _form, page_handler as _handler, painting as _painting


@pytest.fixture(scope="module")
def ski(tmp_path_factory, clips_dir):
    return clip_with_audio(tmp_path_factory.mktemp("clip") / "ski.mp4", clips_dir, frames=6, size=64)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A 6-frame 172x96 clip (whose sides at an edit's size round to other shapes), frame i grey 40 * i."""
    frames = np.stack([np.full((96, 172, 3), 40 * index, np.uint8) for index in range(6)])
    return write_video(tmp_path_factory.mktemp("wide") / "wide.mp4", frames, 8)








# ----------------------------------------------------------------------------------------------- 1: drag field
def test_the_drag_field_takes_vectors_never_a_file_on_the_server(service, ski, tmp_path):
    from gen1.serve.service import drag_vectors

    secret = tmp_path / "tracks.csv"
    secret.write_text("frame,x0,y0,x1,y1\nTOPSECRET,1,2,3,4\n")
    messages = []
    for typed in (str(secret), str(tmp_path / "missing.csv"), str(tmp_path / "conf.json"), "tracks.csv"):
        (tmp_path / "conf.json").write_text('{"password": "TOPSECRET"}')
        with pytest.raises(ValueError) as error:
            service.edit(_form(ski, prompt="", drag_vectors=typed, mask_file=str(tmp_path / "m.png")))
        messages.append(str(error.value))
    assert len(set(messages)) == 1  # the same line whether the file exists or not
    message = messages[0]
    assert "\n" not in message and "TOPSECRET" not in message and str(tmp_path) not in message
    assert message.startswith("--drag takes vectors X0,Y0:X1,Y1 here")
    assert drag_vectors(" 1,2:3,4\n5.5,6:7,8 ") == ("1,2:3,4", "5.5,6:7,8")
    with pytest.raises(ValueError, match=r"^--drag takes vectors X0,Y0:X1,Y1 here .*got '1,2:3'$"):
        drag_vectors("1,2:3")


# ----------------------------------------------------------------------------------------------- 2: sessions
def test_every_preview_handler_is_given_the_pages_request(service):
    """gradio passes gr.Request only to a parameter it sees in the signature (not through *args): each handler that
    books files to a session must get it, or its files go to one shared session that never ends."""
    app = build_app(service)
    asking = 0
    for block in app.fns.values():
        wants = [name for name, hint in getattr(block.fn, "__annotations__", {}).items()
                 if hint in ("gr.Request", gr.Request)]
        if wants:
            asking += 1
            inputs, *_ = special_args(block.fn, [None] * len(block.inputs), request=gr.Request(session_hash="s"))
            assert any(isinstance(value, gr.Request) for value in inputs), block.fn.__name__
    assert asking >= 8  # upload, settings, frame, track, edit, preview edit, cancel, failure (and arm)


def test_a_previews_files_are_its_sessions_and_go_with_it(catalog, ski, tmp_path):
    service = EditService(catalog, ServeLimits(max_frames=12, max_seconds=5), workdir=tmp_path / "work")
    app = build_app(service)
    clip = [str(ski), 64, 0, "", "", "", None, False, service.catalog.default_name, 0.0]
    outputs = _handler(app, "preview_upload")(*clip, session="ann")
    source = outputs[0]
    assert source is not None and f"{tmp_path / 'work'}" in source
    jobs = [path for path in service._session_files["ann"] if path.is_dir()]
    assert jobs and "" not in service._session_files
    canvas = _handler(app, "choose_frame")(*clip, 3, session="ann")[1]
    assert canvas.shape == (512, 512, 3)
    tracked = _handler(app, "track")(*clip[:9], _painting((512, 512), 200), None, True, "flow", "", 0, "edit",
                                     session="ann")
    assert "" not in service._session_files and len(service._session_files["ann"]) >= 2
    service.end_session("ann")
    assert not any(path.exists() for path in jobs) and not (tmp_path / "work" / tracked).exists()
    assert not list((tmp_path / "work").glob("job-*"))


# ----------------------------------------------------------------------------------------------- 3: erase
def test_the_tracked_mask_preview_of_an_erase_takes_no_prompt(service, ski):
    form = _form(ski, prompt="", erase=True, mask_drawing=_painting((512, 512), 200), mask_frame=0)
    assert service.track_preview(form).is_file()
    form = _form(ski, prompt="red stripes", erase=True, mask_drawing=_painting((512, 512), 200), mask_frame=0)
    assert service.track_preview(form).is_file()  # the page's prompt field is not the preview's business


def test_the_pages_tracker_choice_applies_only_to_a_followed_mask(service, ski):
    # gen1 edit refuses --mask-tracker sam2 with nothing to follow; the page keeps its dropdown's choice when the
    # "follow" box is unticked, so that choice must not reach a plain masked edit
    painted = _painting((512, 512), 200)
    assert service._request(_form(ski, mask_drawing=painted, mask_tracker="sam2"), service._new_job()).mask_tracker \
        == "flow"
    followed = service._request(_form(ski, mask_drawing=painted, mask_tracker="sam2", mask_frame=0), service._new_job())
    assert followed.mask_tracker == "sam2"


def test_the_pages_distance_box_applies_only_to_an_uploaded_depth(service, ski, tmp_path):
    # gen1 edit refuses --depth-invert without --depth; the page's box sits under the upload and may stay ticked
    # when no file is given, so it must not reach an edit without one
    from PIL import Image

    assert not service._request(_form(ski, depth_invert=True), service._new_job()).depth_invert
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "far.png")
    form = _form(ski, depth_invert=True, depth_file=str(tmp_path / "far.png"))
    assert service._request(form, service._new_job()).depth_invert


# ----------------------------------------------------------------------------------------------- 4: failed edit
def test_a_failed_edit_says_so_in_the_status_and_clears_the_previous_result(service, ski):
    from gen1.serve.app import _failed_outputs

    app = build_app(service)
    edit = _handler(app, "edit")
    with pytest.raises(gr.Error, match="give --prompt"):
        edit(str(ski), "", session="bob")
    output, compare, downloads, command, status = _handler(app, "failed")(session="bob")
    assert (output, compare, downloads, command) == (None, None, None, "")
    assert status.startswith("The edit failed: give --prompt") and "Editing" not in status
    assert _failed_outputs(None)[-1].startswith("The edit failed (the message above says why)")
    # the page runs it when (and only when) the edit or the preview edit fails
    edits = {block._id for block in app.fns.values() if block.api_name in ("edit", "preview_edit")}
    failures = [block for block in app.fns.values() if getattr(block.fn, "__name__", "") == "failed"]
    assert len(failures) == 2 and all(block.trigger_only_on_failure for block in failures)
    assert {block.trigger_after for block in failures} == edits


def test_the_errors_kept_for_the_status_are_bounded(service, ski, monkeypatch):
    """API clients' failed edits run no failure handler (the page's JavaScript does): their errors must not pile up."""
    import gen1.serve.app as app_module

    monkeypatch.setattr(app_module, "MAX_FAILURES_KEPT", 2)
    app = build_app(service)
    for session in ("a", "b", "c"):
        with pytest.raises(gr.Error):
            _handler(app, "edit")(str(ski), "", session=session)
    assert _handler(app, "failed")(session="a")[-1].startswith("The edit failed (the message above")
    assert _handler(app, "failed")(session="c")[-1].startswith("The edit failed: give --prompt")


# ----------------------------------------------------------------------------------------------- 5: numbers
@pytest.mark.parametrize("settings, message", [
    (dict(num_inference_steps=float("nan")), "^--steps must be an integer, got nan$"),
    (dict(size=float("nan")), "^--size must be a positive integer, got nan$"),
    (dict(seed=float("nan")), "^--seed must be an integer, got nan$"),
    (dict(fps="0"), "^--fps must be a finite number > 0, got 0"),
    (dict(duration="0"), "^--duration must be a finite number > 0, got 0"),
    (dict(mask_frame=float("nan")), "^--mask-frame must be a whole number, got 'nan'$"),
])
def test_a_bad_number_from_an_api_client_is_one_line_naming_its_flag(service, ski, settings, message):
    with pytest.raises(ValueError, match=message):
        service.edit(_form(ski, **settings))


def test_the_pages_frame_number_is_checked_naming_mask_frame():
    with pytest.raises(ValueError, match="^--mask-frame must be a whole number, got 'nan'$"):
        mask_frame_of(float("nan"), True, "")
    assert mask_frame_of(2.0, True, "") == 2 and mask_frame_of(None, False, "") is None


# ----------------------------------------------------------------------------------------------- 6, 9, 10: settings
def test_fewer_frames_move_the_chosen_frame_within_the_clip_and_show_it(service, ski, monkeypatch):
    infos = []
    monkeypatch.setattr(gr, "Info", lambda message, *args, **kwargs: infos.append(message))
    app = build_app(service)
    clip = [str(ski), 64, 0, "", "2", "", None, False, service.catalog.default_name, 0.0]
    *_, drawing, click_canvas, shown, slider = _handler(app, "preview")(*clip, 4, None, "", session="cy")
    assert (slider.maximum, slider.value) == (1, 1)
    assert infos and "the frame to paint, click and drag on is now 1 (it was 4)" in infos[0]
    expected = service.frame_canvas(_form(ski, max_frames="2"), 1)
    assert np.array_equal(click_canvas, expected) and np.array_equal(drawing["background"], expected)
    outputs = [len(block.outputs) for block in app.fns.values() if getattr(block.fn, "__name__", "") == "preview"]
    cleared = _handler(app, "preview")(None, *clip[1:], 4, None, "", session="cy")  # no video: one value per output
    assert len(cleared) in outputs and cleared[:3] == (None, None, None)


def test_a_new_start_shows_its_frame_on_the_canvases(service, wide):
    app = build_app(service)
    clip = [str(wide), 64, 0.25, "", "", "", None, False, service.catalog.default_name, 0.0]
    *_, drawing, click_canvas, shown, slider = _handler(app, "preview")(*clip, 1, None, "", session="di")
    expected = service.frame_canvas(_form(wide, start=0.25), 1)  # source frame 3, not the old start's frame 1
    assert slider.value == 1 and np.array_equal(click_canvas, expected) and np.array_equal(shown, expected)
    assert abs(int(expected.mean()) - 120) <= 4


def test_a_painting_follows_a_change_of_size(service, wide):
    """A mask painted at Size 64 (the 172x96 clip is 112x64 there, its canvas 896x512) still fits after Size 72
    (128x72): the page scales the painting to the new canvas, and an edit that arrives before the canvas is redrawn
    brings the old painting to the edit's frames itself (both were refused: --mask is 896x512 but the video is
    172x96)."""
    from PIL import Image

    from gen1.editing import EditRequest, read_inputs

    app = build_app(service)
    painted = _painting((512, 896), 448)  # the left half of the canvas of size 64
    clip = [str(wide), 72, 0, "", "", "", None, False, service.catalog.default_name, 0.0]
    *_, drawing, click_canvas, shown, slider = _handler(app, "preview")(*clip, 0, painted, "", session="ed")
    assert drawing["layers"][0].shape[:2] == click_canvas.shape[:2] == (504, 896)  # 128x72 enlarged 7x
    regions = []
    for given in (drawing, painted):
        outcome = service.edit(_form(wide, size=72, mask_drawing=given))
        assert "--mask mask.png" in outcome.command
        path = [path for path in outcome.downloads if path.name == "mask.png"][0]
        assert np.asarray(Image.open(path)).shape == given["layers"][0].shape[:2]  # as painted: read at any --size
        request = EditRequest(input=str(wide), output=str(path.with_name("x.mp4")), prompt=("x",), mask=str(path),
                              size=72)
        regions.append(read_inputs(request).mask[0, 0] > 0.5)
    assert tuple(regions[0].shape) == (72, 128) and bool(regions[0][:, :60].all()) and not regions[0][:, 68:].any()
    assert float((regions[0] ^ regions[1]).float().mean()) < 0.02  # the left half either way
    # a painting of another shape (another clip's) is refused naming the sizes, not stretched to fit
    with pytest.raises(ValueError, match="^--mask is 512x512 but the video is 172x96"):
        service.edit(_form(wide, size=72, mask_drawing=_painting((512, 512), 200)))


# ----------------------------------------------------------------------------------------------- 7: preview window
@pytest.mark.parametrize("window", ["0", "-4"])
def test_the_preview_names_a_bad_window_as_the_flag(service, ski, window):
    # it said "window_size must be an integer >= 1" (the Python name) where "abc" got "--window must be a number"
    with pytest.raises(ValueError, match="^--window must be"):
        service.preview_edit(_form(ski, window_size=window))


def test_the_preview_of_a_subject_given_after_the_first_window_says_why_not(service, ski):
    form = _form(ski, mask_drawing=_painting((512, 512), 200), mask_frame=5, window_size="4")
    with pytest.raises(ValueError, match=r"^the preview edits the first window, frames 0 to 3, but the subject is "
                                         r"given on frame 5: choose a frame within the window"):
        service.preview_edit(form)


# ----------------------------------------------------------------------------------------------- 8: SAM 2 absent
def test_clicks_on_a_server_without_sam2_are_one_line_a_web_user_can_act_on(service, ski, tmp_path, monkeypatch):
    from tiny_hub import offline_cache

    offline_cache(monkeypatch, tmp_path)
    form = _form(ski, mask_clicks="30,30", mask_tracker="sam2", mask_frame=0)
    for run in (service.track_preview, service.edit):
        with pytest.raises(ValueError) as error:
            run(form)
        message = str(error.value)
        assert message.startswith("this server has no sam2 model (clicks on the subject need it: paint the "
                                  "subject's mask instead")
        assert "\n" not in message and str(tmp_path) not in message and "hf download" not in message
        assert "--mask-tracker-model" not in message
