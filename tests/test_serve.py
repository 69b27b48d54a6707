"""gen1 serve without a browser: the structure preview, the edit service behind the page, the command's checks,
and gradio's queue running one edit at a time while waiting users see their place."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gen1.cli import main
from gen1.editing import EditCancelled, EditRequest, run_edit
from gen1.serve.preview import prepare_structure
from gen1.serve.service import EditForm, EditOutcome, EditService, ServeLimits
from serve_helpers import clip_with_audio, free_port


@pytest.fixture(scope="module")
def ski(tmp_path_factory, clips_dir):
    return clip_with_audio(tmp_path_factory.mktemp("clip") / "ski.mp4", clips_dir, frames=6, size=64)


def _form(video, **settings) -> EditForm:
    values = dict(video=str(video), prompt="red stripes", size=64, num_inference_steps=2, guidance_scale=1.0)
    values.update(settings)
    return EditForm(**values)


# ----------------------------------------------------------------------------------------------- preview
def test_the_preview_shows_the_structure_the_edit_uses_at_any_level(bundled_pipe, ski, tmp_path):
    request = EditRequest(input=str(ski), output=str(tmp_path / "o.mp4"), prompt=("x",), size=64, num_inference_steps=1,
                          structure_level=2.5, guidance_scale=1.0)
    result = run_edit(bundled_pipe, request)
    from gen1.media import read_video

    preview = prepare_structure(bundled_pipe, read_video(ski, size=64).frames)
    assert torch.equal(preview.at(2.5), result.depth)
    assert not torch.equal(preview.at(0), preview.at(6))
    assert preview.image(6).shape == (64, 64) and preview.image(6).dtype == np.uint8


def test_the_preview_of_a_controlnet_model_obscures_on_the_pixel_grid(tmp_path):
    from gen1.pipeline import Gen1Pipeline
    from tiny_public import write_public_stack

    stack = write_public_stack(tmp_path)
    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"])
    pipe.set_progress_bar_config(disable=True)
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    depth = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    result = pipe(frames, prompt="a red car", depth=depth, structure_level=4, num_inference_steps=1,
                  output_type="pt")
    assert torch.equal(prepare_structure(pipe, frames, depth).at(4), result.depth)


def test_preview_clip_reads_what_the_edit_reads(service, ski):
    clip = service.preview_clip(_form(ski, max_frames=4))
    assert clip.structure.depth.shape == (4, 1, 64, 64)
    assert clip.mask_canvas.shape == (512, 512, 3)  # the first frame enlarged 8x for painting a mask
    from gen1.media import read_video

    shown = read_video(clip.source_video)
    assert shown.num_frames == 4 and shown.has_audio


# ----------------------------------------------------------------------------------------------- edit
def test_an_edit_writes_the_outputs_and_the_command_that_reproduces_it(service, ski):
    outcome = service.edit(_form(ski, structure_level=3, seed=4))
    assert [path.name for path in outcome.downloads] == ["ski-edited.mp4", "ski-comparison.mp4"]
    assert all(path.is_file() for path in outcome.downloads)
    assert outcome.command == ("gen1 edit ski.mp4 -o ski-edited.mp4 --prompt 'red stripes' --structure-level 3 "
                               "--guidance 1 --steps 2 --seed 4 --size 64 --compare ski-comparison.mp4")
    assert "6 frames" in outcome.summary and "audio kept" in outcome.summary


def test_a_drawn_mask_is_used_offered_and_named_in_the_command(service, ski):
    background = np.zeros((512, 512, 3), np.uint8)
    layer = np.zeros((512, 512, 4), np.uint8)
    layer[:, :200, 3] = 255  # painted: the left part
    outcome = service.edit(_form(ski, mask_drawing={"background": background, "layers": [layer], "composite": None}))
    mask = [path for path in outcome.downloads if path.name == "mask.png"]
    assert len(mask) == 1 and "--mask mask.png" in outcome.command
    saved = np.asarray(Image.open(mask[0]))
    assert saved.shape == (512, 512) and saved[:, :200].min() == 255 and saved[:, 200:].max() == 0


def test_an_empty_drawing_is_no_mask(service, ski):
    empty = {"background": np.zeros((512, 512, 3), np.uint8), "layers": [np.zeros((512, 512, 4), np.uint8)]}
    assert "--mask" not in service.edit(_form(ski, mask_drawing=empty)).command


@pytest.mark.parametrize("settings, message", [
    (dict(prompt=""), "give --prompt and/or --reference"),
    (dict(size=2048), "--size 2048 is above this server's limit of 1024"),
    (dict(model="sd15"), "unknown model 'sd15': this server offers demo"),
    (dict(negative_prompt="blurry"), "--negative-prompt does not apply to demo, a native Gen-1 model"),
    (dict(mask_file="{tmp}/mask.png", mask_drawing="paint"), "give one mask"),
    (dict(mask_file="{tmp}/wide.png"), "--mask is 112x64 but the video is"),
    (dict(video="{tmp}/notes.mp4"), "INPUT: not a readable video file: 'notes.mp4'"),
])
def test_mistakes_are_clear_errors_that_name_uploads_by_their_names(service, ski, tmp_path, settings, message):
    (tmp_path / "notes.mp4").write_text("not a video")
    Image.fromarray(np.full((64, 112), 255, np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tmp_path / "mask.png")
    values = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in settings.items()}
    if values.get("mask_drawing") == "paint":
        layer = np.zeros((8, 8, 4), np.uint8)
        layer[..., 3] = 255
        values["mask_drawing"] = {"layers": [layer]}
    form = _form(values.pop("video", ski), **values)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        service.edit(form)
    assert str(tmp_path) not in str(error.value)


def test_a_clip_over_the_limits_is_refused(catalog, tmp_path, clips_dir):
    service = EditService(catalog, ServeLimits(max_frames=4, max_seconds=5), workdir=tmp_path / "work")
    with pytest.raises(ValueError, match="more than 4 frames, the most this server edits at once"):
        service.preview_clip(_form(clips_dir / "wolf.mp4", size=16))
    service = EditService(catalog, ServeLimits(max_frames=10, max_seconds=0.1), workdir=tmp_path / "work")
    with pytest.raises(ValueError, match="lasts 0.2 s; this server edits at most 0.1 s"):
        service.preview_clip(_form(clips_dir / "wolf.mp4", size=16, max_frames=4))


def test_a_cancel_stops_the_sessions_next_edit_and_writes_nothing(service, ski):
    service.arm("alice")
    service.cancel("alice")
    with pytest.raises(EditCancelled):
        service.edit(_form(ski), session="alice")
    assert not list(service.workdir.rglob("*.mp4"))
    assert service.edit(_form(ski), session="bob").output.is_file()  # another session is not affected
    service.arm("alice")  # a new edit of alice's: the old cancel no longer applies
    assert service.edit(_form(ski), session="alice").output.is_file()


# ----------------------------------------------------------------------------------------------- the command
@pytest.mark.parametrize("args, message", [
    (["--models", "nameless"], "--models takes NAME=PATH, got 'nameless'"),
    (["--models", "x={tmp}/nope"], "--models x: --model directory not found"),
    (["--model", "{tmp}"], "not a gen1 pipeline directory"),
    (["--port", "70000"], "--port must be an integer from 0 to 65535, got 70000"),
    (["--max-frames", "0"], "--max-frames must be an integer >= 1, got 0"),
    (["--max-size", "100"], "--max-size (target short side) must be a multiple of 8"),
    (["--device", "tpu"], "--device must be cpu or cuda"),
])
def test_serve_errors_are_one_line_before_anything_starts(tmp_path, capsys, monkeypatch, args, message):
    import gen1.serve.models

    monkeypatch.setattr(gen1.serve.models, "load_model", lambda source: pytest.fail("loaded a model"))
    assert main(["serve", *[arg.format(tmp=tmp_path) for arg in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------- the queue
def test_edits_run_one_at_a_time_and_waiting_users_see_their_place(service, ski):
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    from gen1.serve.app import build_app

    release, running, most = threading.Event(), [], []

    def blocking_edit(form, *, session="", progress=None):
        running.append(session)
        most.append(len(running))
        release.wait(120)
        running.remove(session)
        return EditOutcome(output=ski, compare=ski, downloads=[ski], command="gen1 edit", summary=form.prompt)

    service.edit = blocking_edit
    app = build_app(service)
    app.queue(default_concurrency_limit=1)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        first = client.submit(video=handle_file(str(ski)), prompt="first", api_name="/edit")
        _wait_for(lambda: running)
        second = client.submit(video=handle_file(str(ski)), prompt="second", api_name="/edit")
        _wait_for(lambda: second.status().code == Status.IN_QUEUE)
        assert second.status().rank == 0 and len(running) == 1  # next in line, while the first edit runs
        release.set()
        assert first.result()[-1] == "first" and second.result()[-1] == "second"
        assert max(most) == 1
    finally:
        release.set()
        app.close()


def _wait_for(condition, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true")
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------------- issues 32 and 38
def _launched(service):
    from gen1.serve.app import build_app

    app = build_app(service)
    app.queue(default_concurrency_limit=1)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    return app, port


def test_empty_number_fields_keep_their_defaults_and_a_window_alone_gets_the_default_overlap(service, ski):
    """The page's optional numbers arrive empty ("") as the browser sends them: they mean "keep" (no flag), and a
    window without an overlap gets window // 4, not 0."""
    from gradio_client import Client, handle_file

    app, port = _launched(service)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        output, compare, downloads, command, summary = client.predict(
            video=handle_file(str(ski)), prompt="red stripes", num_inference_steps=1, size=64, guidance_scale=1.0,
            fps="", duration="", max_frames="", window_size="4", window_overlap="", api_name="/edit")
    finally:
        app.close()
    assert "6 frames" in summary
    assert "--window 4" in command and "--overlap" not in command and "--max-frames" not in command
    request = service._request(_form(ski, window_size="4", window_overlap=" ", max_frames=""), service._new_job())
    assert (request.window_size, request.window_overlap, request.max_frames, request.fps) == (4, None, None, None)


def test_the_preview_edits_the_first_window_at_the_same_settings_and_says_so(service, ski):
    """Preview (the page's button, the API's /preview_edit) edits only the frames of the first temporal window, at
    the page's settings; its command line reproduces it (--max-frames); a smaller --max-frames is kept."""
    from gradio_client import Client, handle_file

    from gen1.media import read_video

    app, port = _launched(service)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        output, compare, downloads, command, summary = client.predict(
            video=handle_file(str(ski)), prompt="red stripes", num_inference_steps=1, size=64, guidance_scale=1.0,
            window_size="4", seed=3, api_name="/preview_edit")
    finally:
        app.close()
    assert summary.startswith("Preview of the first window. Edited 4 frames")
    assert "--window 4" in command and "--max-frames 4" in command and "--seed 3" in command
    assert read_video(output).frames.shape[0] == 4
    kept = service.preview_edit(_form(ski, max_frames="2"))
    assert "Edited 2 frames" in kept.summary and "--max-frames 2" in kept.command


@pytest.mark.parametrize("settings, message", [
    (dict(max_frames="abc"), "--max-frames must be a number, got 'abc'"),
    (dict(window_size="2.5"), "--window must be a whole number, got '2.5'"),
    (dict(max_frames="0"), "--max-frames"),
])
def test_a_number_field_that_is_no_number_is_a_clear_error(service, ski, settings, message):
    with pytest.raises(ValueError, match=message):
        service.edit(_form(ski, **settings))


def test_after_a_cancelled_edit_the_sessions_next_edit_runs(service, ski):
    """One cancel stops one edit: the next edit of the same session runs (it used to be cancelled at once)."""
    def cancel_midway(done, total):
        service.cancel("carol")

    with pytest.raises(EditCancelled):
        service.edit(_form(ski, num_inference_steps=3), session="carol", progress=cancel_midway)
    assert service.edit(_form(ski), session="carol").output.is_file()


def test_warnings_reach_the_page(service, ski):
    outcome = service.edit(_form(ski, prompt="a watercolour painting"))
    assert any("'watercolour'" in note for note in outcome.warnings)
    assert "Warning: prompt words this content encoder was not trained on" in outcome.summary
    small = service.edit(_form(ski, prompt="red striped objects", size=16))  # 4x below the model's 64 px
    assert small.warnings == ["size 16 px is far from the 64 px this model was trained at: expect a worse edit "
                              "(its default size is 64)"]
    assert f"Warning: {small.warnings[0]}" in small.summary


def test_the_edit_draws_one_progress_bar_on_the_edited_video(service):
    from gen1.serve.app import build_app

    app = build_app(service)
    config = app.get_config_file()
    edit = next(dep for dep in config["dependencies"] if dep.get("api_name") == "edit")
    video = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "output-video")
    status = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "status")
    assert edit["show_progress_on"] == [video] and status in edit["outputs"]


def test_stop_cancels_a_running_edit_and_waits_for_it(service, ski):
    started, outcome = threading.Event(), []

    def run():
        try:
            service.edit(_form(ski, num_inference_steps=50), session="dave", progress=lambda d, t: started.set())
        except EditCancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(120)
    assert service.stop(timeout_s=120)
    thread.join(5)
    assert outcome == ["cancelled"] and not thread.is_alive()


def test_serve_loads_every_offered_model_before_it_is_ready(tmp_path, capsys, monkeypatch):
    import gen1.serve.app
    import gen1.serve.models

    def load(source):
        raise RuntimeError("the UNet's weights do not fit its config")

    monkeypatch.setattr(gen1.serve.models, "load_model", load)
    monkeypatch.setattr(gen1.serve.app, "build_app", lambda service: pytest.fail("built the page"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "model 'gen1 demo (64 px)' cannot be loaded (RuntimeError: the UNet's weights do not fit" in err
    assert err.count("\n") == 1


def _large_uploads(tmp_path) -> dict:
    """Uploads of 5000x5000 pixels (over the limit of an edit at 64 px: 4096², see upload_pixel_limit), small on
    disk: a black PNG and a sparse .npy depth."""
    big = tmp_path / "big.png"
    Image.new("L", (5000, 5000)).save(big)
    header = tmp_path / "big.npy"
    with open(header, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<f4", "fortran_order": False, "shape": (1, 5000, 5000)})
        file.truncate(file.tell() + 5000 * 5000 * 4)  # a sparse file: the data's size, none of it on disk
    return {"png": big, "npy": header}


@pytest.mark.parametrize("field, upload", [("mask_file", "png"), ("depth_file", "png"), ("depth_file", "npy"),
                                           ("references", "png")])
def test_an_image_upload_over_the_edits_pixel_limit_is_refused_before_decoding(service, ski, tmp_path, field, upload):
    from gen1.serve.service import upload_pixel_limit

    assert upload_pixel_limit(64) == 4096 ** 2 and upload_pixel_limit(1024) == 8192 ** 2
    path = str(_large_uploads(tmp_path)[upload])
    value = [(path, 1.0)] if field == "references" else path
    with pytest.raises(ValueError, match="is 5000x5000 = 25,000,000 pixels, more than the 16,777,216") as error:
        service.edit(_form(ski, **{field: value}))
    assert str(tmp_path) not in str(error.value)


def test_a_reference_over_the_pixel_limit_is_refused_through_the_gradio_api(service, ski, tmp_path):
    from gradio_client import Client, handle_file

    big = _large_uploads(tmp_path)["png"]
    app, port = _launched(service)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        with pytest.raises(Exception, match="more than the 16,777,216 gen1 reads"):
            client.predict(video=handle_file(str(ski)), prompt="red stripes", reference_1=handle_file(str(big)),
                           num_inference_steps=1, size=64, guidance_scale=1.0, api_name="/edit")
    finally:
        app.close()


def test_a_sessions_disk_use_is_bounded_and_its_files_go_with_it(catalog, ski, tmp_path):
    import shutil

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    video = shutil.copy(ski, uploads / "ski.mp4")
    service = EditService(catalog, ServeLimits(max_frames=12, max_seconds=5, max_session_mb=0.2),
                          workdir=tmp_path / "work", upload_root=uploads)
    outcome = service.edit(_form(video), session="erin")
    assert outcome.output.is_file()
    filler = uploads / "filler.png"
    filler.write_bytes(b"\0" * 250_000)
    with pytest.raises(ValueError, match=r"this session's uploads and results take 0\.[23] MB, more than the 0\.2 MB"):
        service.edit(_form(video, mask_file=str(filler)), session="erin")
    assert service.edit(_form(ski), session="frank").output.is_file()  # another session has its own bound
    service.end_session("erin")
    assert not outcome.output.exists() and not (uploads / "ski.mp4").exists() and not filler.exists()
    assert ski.is_file()  # a file outside the upload folder is never removed


def test_an_upload_over_the_total_quota_is_refused_before_it_is_stored(catalog, ski, tmp_path, monkeypatch):
    import httpx

    from gen1.serve.app import build_app, launch_options

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    service = EditService(catalog, ServeLimits(max_total_mb=0.05), workdir=tmp_path / "work")
    app = build_app(service)
    options = launch_options(service)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True,
               app_kwargs=options["app_kwargs"])
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        small = httpx.post(url, files={"files": ("a.txt", b"x" * 1000)}, timeout=60)
        assert small.status_code == 200
        big = httpx.post(url, files={"files": ("ski.mp4", b"\0" * 60_000)}, timeout=60)
        assert big.status_code == 413 and "this server's upload space is full" in big.text
        assert not list((tmp_path / "gradio").rglob("ski.mp4"))
    finally:
        app.close()
        service.close()
