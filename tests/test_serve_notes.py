"""gen1 serve's answers to a second QA pass, without a browser: messages read as plain text by API clients and
stay escaped on the page, whole numbers from API clients are not rounded unseen, a failed request leaves no job
folder, huge images are refused in one line naming the upload and the limit, the command line names the user's
own file names, uploads leave no empty temporary files, a lone content weight of 0 is refused as gen1 edit refuses
it, the preview's downloads are named apart from the edit's, and a missing SAM 2 model is looked for once."""

from __future__ import annotations

import shlex

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image

from bad_files import png_claiming
from gen1.editing import EditCancelled
from gen1.serve.app import build_app, uploaded_file, uploaded_image
from gen1.serve.service import EditService, ServeLimits, Upload, upload_name
from serve_helpers import clip_with_audio, edit_form as _form, page_handler as _handler, painting as _painting


@pytest.fixture(scope="module")
def ski(tmp_path_factory, clips_dir):
    return clip_with_audio(tmp_path_factory.mktemp("clip") / "ski.mp4", clips_dir, frames=6, size=64)








def _component(app, info: str):
    found = [block for block in app.blocks.values() if getattr(block, "info", None) == info]
    assert len(found) == 1, info
    return found[0]


def _jobs(service) -> list:
    return sorted(service.workdir.glob("job-*"))


# ----------------------------------------------------------------------------------------------- 1: escaping
@pytest.mark.parametrize("headers, shown", [
    ({"x-gradio-user": "api"}, "got '<x>'"),  # gradio_client
    ({}, "got '<x>'"),  # raw HTTP
    ({"x-gradio-user": "app"}, "got &#x27;&lt;x&gt;&#x27;"),  # the app's own page, which renders it as HTML
])
def test_messages_are_plain_text_for_api_clients_and_escaped_for_the_page(service, ski, headers, shown):
    app = build_app(service)
    with pytest.raises(gr.Error) as error:
        _handler(app, "edit")(str(ski), "", session="esc", headers=headers, subject="drag", drag_vectors="<x>",
                              mask_file=str(ski))
    assert error.value.message.endswith(shown)
    status = _handler(app, "failed")(session="esc")[-1]
    assert "got &#x27;&lt;x&gt;&#x27;" in status and "&amp;" not in status  # the status: escaped once, either way


# ----------------------------------------------------------------------------------------------- 2: whole numbers
def test_a_fractional_count_from_an_api_client_is_refused_not_rounded(service, ski):
    app = build_app(service)
    assert _component(app, "--seed").preprocess(2.7) == 2.7  # was rounded to 3 by gr.Number(precision=0)
    assert _component(app, "--steps").preprocess(2.7) == 2.7
    for settings, message in ((dict(seed=2.7), "^--seed must be an integer, got 2.7$"),
                              (dict(num_inference_steps=2.7), "^--steps must be an integer, got 2.7$")):
        with pytest.raises(ValueError, match=message):
            service.edit(_form(ski, **settings))
    assert "--seed 3" in service.edit(_form(ski, seed=3.0)).command  # a whole number sent as a float is fine


# ----------------------------------------------------------------------------------------------- 3: window
@pytest.mark.parametrize("window", [0, 0.0, "0"])
def test_the_preview_names_a_window_of_0_as_the_flag(service, ski, window):
    with pytest.raises(ValueError, match="^--window must be an integer >= 1, got 0$"):
        service.preview_edit(_form(ski, window_size=window))


# ----------------------------------------------------------------------------------------------- 4, 11: job folders
def test_a_failed_or_cancelled_request_leaves_no_job_folder_and_removes_nothing_else(service, ski):
    kept = service.edit(_form(ski, mask_drawing=_painting((512, 512), 200)), session="ann")
    others = service.preview_clip(_form(ski), session="bob").source_video
    before = _jobs(service)
    assert len(before) == 2
    failing = [lambda: service.edit(_form(ski, window_size="0", mask_drawing=_painting((512, 512), 9)), session="ann"),
               lambda: service.edit(_form(ski, prompt=""), session="ann"),
               lambda: service.preview_edit(_form(ski, num_inference_steps=2.7), session="ann"),
               lambda: service.track_preview(_form(ski), session="ann"),
               lambda: service.preview_clip(_form(ski, max_frames="abc"), session="ann"),
               lambda: service.frame_canvas(_form(ski), 99, session="ann")]
    for run in failing:
        with pytest.raises(ValueError):
            run()
    service.cancel("ann")
    with pytest.raises(EditCancelled):
        service.edit(_form(ski, mask_drawing=_painting((512, 512), 9)), session="ann")
    assert _jobs(service) == before  # the successful edit's and the other session's folders, nothing more
    assert kept.output.is_file() and all(path.is_file() for path in kept.downloads) and others.is_file()
    assert service._session_files["ann"] >= {kept.output.parent} and not any(
        path.parent == service.workdir and not path.exists() for path in service._session_files["ann"])


# ----------------------------------------------------------------------------------------------- 5: huge images
def test_a_huge_mask_or_reference_is_one_line_naming_the_upload_and_the_limit(service, ski, tmp_path):
    bomb = png_claiming(tmp_path / "big.png", 20000, 20000, colour_type=0)  # over PIL's own bomb limit
    limit = "has more than the 16,777,216 pixels gen1 reads"
    with pytest.raises(ValueError) as error:
        service.edit(_form(ski, mask_file=str(bomb)))
    message = str(error.value)
    assert message.startswith("--mask: ") and f"'big.png' {limit}" in message
    assert "DOS" not in message and "Image size" not in message and str(tmp_path) not in message
    reference = uploaded_image().preprocess(
        FileData(path=str(bomb), orig_name="huge photo.png"))  # gradio's PIL.Image.open stopped it here
    assert reference == str(bomb) and reference.user_name == "huge photo.png"
    with pytest.raises(ValueError, match=f"^--reference: reference image 'huge photo.png' {limit}"):
        service.edit(_form(ski, prompt="", references=[(reference, 1.0)]))
    # a file that is no image: gradio's "Could not preprocess input component ... UnidentifiedImageError" with the
    # server's path; now gen1's line naming --reference and the user's file
    notes = tmp_path / "stored.png"
    notes.write_text("not an image")
    reference = uploaded_image().preprocess(FileData(path=str(notes), orig_name="notes.png"))
    assert reference == str(notes) and reference.user_name == "notes.png"
    with pytest.raises(ValueError) as error:
        service.edit(_form(ski, prompt="", references=[(reference, 1.0)]))
    assert str(error.value).startswith("--reference: ") and "'notes.png'" in str(error.value)
    assert str(tmp_path) not in str(error.value)


# ----------------------------------------------------------------------------------------------- 6: upload names
def test_the_command_line_names_the_file_the_user_uploaded_shell_quoted(service, ski, tmp_path):
    app = build_app(service)
    stored = tmp_path / "gradio" / "0123" / "clip (x).mp4"  # how gradio stores "clip $(x).mp4"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(ski.read_bytes())
    video = uploaded_file().preprocess(FileData(path=str(stored), orig_name="clip $(x).mp4"))
    assert video == str(stored) and video.user_name == "clip $(x).mp4"
    mask = stored.with_name("m.png")
    Image.fromarray(np.where(np.arange(64) < 32, 255, 0).astype(np.uint8)[None].repeat(64, 0)).save(mask)
    mask_upload = Upload(str(mask), "mask; rm -rf ~.png")
    outputs = _handler(app, "edit")(video, "red stripes", session="cy", num_inference_steps=1, size=64,
                                    guidance_scale=1.0, mask_file=mask_upload)
    command = shlex.split(outputs[3])
    assert command[2] == "clip $(x).mp4" and command[command.index("--mask") + 1] == "mask; rm -rf ~.png"
    assert "'clip $(x).mp4'" in outputs[3]  # quoted: pasting it runs nothing
    with pytest.raises(gr.Error) as error:  # messages name it so too
        _handler(app, "edit")(video, "red stripes", session="cy", mask_file=Upload(
            str(png_claiming(mask.with_name("m2.png"), 20000, 20000)), "mask; rm -rf ~.png"),
            headers={"x-gradio-user": "api"})
    assert error.value.message.startswith("--mask: image file 'mask; rm -rf ~.png' has more than")
    for given in ("../../etc/passwd", "a\nb.mp4", "", None, "..", "x" * 300):  # not a name to show: the stored one
        assert upload_name(given, "/srv/up/clip (x).mp4") == "clip (x).mp4"


# ----------------------------------------------------------------------------------------------- 7: temp files
def test_uploads_leave_no_empty_temporary_files(service, ski, tmp_path, monkeypatch):
    folder = tmp_path / "gradio"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    app = build_app(service)
    uploaded = folder / "abc" / "ski.mp4"
    uploaded.parent.mkdir()
    uploaded.write_bytes(ski.read_bytes())
    files = [block for block in app.blocks.values() if isinstance(block, gr.File) and block.interactive is not False]
    assert len(files) == 3  # video, mask, depth
    for block in files:
        value = block.preprocess(FileData(path=str(uploaded), orig_name="my clip.mp4"))
        assert value == str(uploaded) and value.user_name == "my clip.mp4"
    assert sorted(path.relative_to(folder) for path in folder.rglob("*")) == [uploaded.parent.relative_to(folder),
                                                                               uploaded.relative_to(folder)]
    with pytest.raises(gr.Error, match="Invalid file type"):  # a type not offered: still refused by gr.File
        files[0].preprocess(FileData(path=str(uploaded.with_suffix(".txt")), orig_name="notes.txt"))


# ----------------------------------------------------------------------------------------------- 8: weights
def test_a_lone_weight_of_0_is_refused_as_gen1_edit_refuses_it(service, ski, tmp_path):
    reference = tmp_path / "look.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(reference)
    for form in (_form(ski, prompt_weight=0.0), _form(ski, prompt="", references=[(str(reference), 0.0)]),
                 _form(ski, prompt_weight=0.0, references=[(str(reference), 0.0)])):
        with pytest.raises(ValueError, match="^--content-weights must not all be 0$"):
            service.edit(form)
    with pytest.raises(ValueError, match="^--content-weights"):
        service.edit(_form(ski, prompt_weight=-1.0))
    assert "--content-weights" not in service.edit(_form(ski, prompt_weight=0.5)).command  # normalised: no change
    both = service.edit(_form(ski, prompt_weight=0.0, references=[(str(reference), 1.0)]))
    assert "--content-weights 0 1" in both.command


# ----------------------------------------------------------------------------------------------- 9: download names
def test_the_previews_downloads_are_named_apart_from_the_edits(service, ski):
    form = _form(ski, mask_drawing=_painting((512, 512), 200))
    preview, edit = service.preview_edit(form), service.edit(form)
    preview_names, edit_names = {p.name for p in preview.downloads}, {p.name for p in edit.downloads}
    assert preview_names == {"ski-preview.mp4", "ski-preview-comparison.mp4", "mask-preview.png"}
    assert edit_names == {"ski-edited.mp4", "ski-comparison.mp4", "mask.png"}
    for outcome, names in ((preview, preview_names), (edit, edit_names)):
        assert {word for word in shlex.split(outcome.command) if word in preview_names | edit_names} == names


# ----------------------------------------------------------------------------------------------- 10: SAM 2
def test_a_missing_sam2_model_is_looked_for_once_then_remembered(catalog, ski, tmp_path, monkeypatch):
    import gen1.serve.service as service_module
    from gen1.tracking import TRACKERS

    looked = []

    def missing(self):
        looked.append(1)
        raise ValueError("no SAM 2 in the cache /srv/cache (hf download facebook/sam2)")

    monkeypatch.setattr(TRACKERS["sam2"], "check_model", missing)
    service = EditService(catalog, ServeLimits(max_frames=12, max_seconds=5), workdir=tmp_path / "work")
    form = _form(ski, mask_clicks="30,30", mask_tracker="sam2", mask_frame=0)
    messages = set()
    for run in (service.track_preview, service.edit, service.edit):
        with pytest.raises(ValueError) as error:
            run(form)
        messages.add(str(error.value))
    assert len(looked) == 1 and len(messages) == 1
    assert messages.pop().startswith("this server has no sam2 model (clicks on the subject need it")
    monkeypatch.setattr(service_module, "MODEL_RETRY_S", 0.0)  # after a while it is looked for again
    with pytest.raises(ValueError, match="^this server has no sam2 model"):
        service.edit(form)
    assert len(looked) == 2
    fresh = EditService(catalog, ServeLimits(max_frames=12, max_seconds=5), workdir=tmp_path / "other")
    with pytest.raises(ValueError):
        fresh.edit(form)
    assert len(looked) == 3  # remembered per server, not for every server of the process


def test_aged_out_job_folders_are_forgotten_with_the_sessions_left_without_files(service, ski, tmp_path,
                                                                                monkeypatch):
    """An API client's session may never end (raw HTTP runs no unload): once its folders age out and its uploads
    are gone, nothing of it is kept."""
    import gen1.serve.service as service_module

    upload = tmp_path / "upload.mp4"
    upload.write_bytes(ski.read_bytes())
    old = service.preview_clip(_form(upload), session="raw-client").source_video.parent
    upload.unlink()  # gradio's own clean-up of old uploads
    kept = service.preview_clip(_form(ski), session="page").source_video.parent
    monkeypatch.setattr(service_module, "JOB_LIFETIME_S", -1.0)  # every folder is old now
    service.frame_canvas(_form(ski), 0, session="page")
    assert not old.exists() and not kept.exists()
    assert "raw-client" not in service._session_files
    assert service._session_files["page"] == {ski}  # its upload is still there: still booked


# ----------------------------------------------------------------------------------------------- the upload fields
def test_no_event_replaces_an_upload_field_whose_reading_gen1_wraps(service):
    # uploaded_file / uploaded_image wrap the component's own reading (the user's file name, no stray temp files,
    # huge images passed on to gen1's refusal). An event that returns an update of such a field makes gradio keep
    # a fresh copy of the component for the session, without the wrapper: all three would silently stop.
    app = build_app(service)
    wrapped = {block._id for block in app.blocks.values()
               if "_process_single_file" in vars(block) or "preprocess" in vars(block)}
    assert len(wrapped) >= 4  # the source video, the mask, the depth and the reference images
    for function in app.fns.values():
        replaced = {block._id for block in function.outputs} & wrapped
        assert not replaced, f"{getattr(function.fn, '__name__', function)} outputs to a wrapped upload field"
