"""``gen1 serve`` used as a person uses it: headless Chromium (the distribution's package, driven by Playwright)
against the app started on 127.0.0.1 with the bundled model; and its public API through ``gradio_client``.

The README's test command installs Chromium when it is missing; without it these tests fail (they never skip).
``GEN1_SERVE_SCREENSHOT=docs/serve.png`` also saves the screenshot of the finished edit there (for the docs).
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from serve_helpers import Server, clip_with_audio

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EDIT_LIMIT_MS = 180_000  # generous: the machine may be shared; a finished edit ends the wait at once
PROMPT = "red striped objects on a blue floor"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("serve"), "--max-frames", "12", "--max-seconds", "5")
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver (the README's test "
                    "command does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def source_clip(tmp_path_factory, clips_dir):
    return clip_with_audio(tmp_path_factory.mktemp("clip") / "ski.mp4", clips_dir)


def _upload(page, path) -> None:
    """Upload ``path`` as the source video (clearing an earlier upload) and wait until the page has read it."""
    clear = page.locator("#source-upload button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.set_input_files("#source-upload input[type=file]", str(path))


def _structure_image(page) -> np.ndarray:
    src = page.get_attribute("#structure-preview img", "src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("L"))


def _edit_and_wait(page) -> str:
    """Click Edit and wait for the page to say it finished; returns the status line."""
    page.click("#edit-button")  # the status says "Editing…" at once, then what was edited
    page.wait_for_function("() => /Editing/.test(document.querySelector('#status').innerText)")
    page.wait_for_function("() => /Edited \\d+ frames/.test(document.querySelector('#status').innerText)",
                           timeout=EDIT_LIMIT_MS)
    return page.inner_text("#status")


def test_edit_in_a_real_browser(server, browser, source_clip, tmp_path):
    from gen1.editing import EditRequest, edit_command
    from gen1.media import read_video

    page = browser.new_page(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
    page.goto(server.url)
    page.wait_for_selector("#edit-button")
    _upload(page, source_clip)
    page.wait_for_selector("#structure-preview img", timeout=EDIT_LIMIT_MS)
    page.wait_for_function("() => document.querySelector('#source-preview video')?.src")

    # moving the t_s slider re-obscures the estimated depth: the preview changes to a coarser layout
    fine = _structure_image(page)
    old_src = page.get_attribute("#structure-preview img", "src")
    page.locator("#structure-level input[type=range]").fill("5")
    page.wait_for_function("old => document.querySelector('#structure-preview img').src !== old", arg=old_src)
    coarse = _structure_image(page)
    assert fine.shape == coarse.shape and not np.array_equal(fine, coarse)
    assert np.abs(np.diff(coarse.astype(float), axis=1)).mean() < np.abs(np.diff(fine.astype(float), axis=1)).mean()

    page.fill("#prompt textarea", PROMPT)
    page.locator("#steps input[type=number]").fill("3")
    page.locator("#steps input[type=number]").press("Enter")
    status = _edit_and_wait(page)
    assert "10 frames" in status and "audio kept" in status

    # the result plays in the browser, and its download is an mp4 with the source's frames and sound
    page.wait_for_function("() => { const v = document.querySelector('#output-video video');"
                           " return v && v.readyState >= 1 && v.videoWidth > 0 && v.duration > 0 }")
    with page.expect_download() as download:
        page.click("#downloads a[download='ski-edited.mp4']")
    edited = tmp_path / "downloaded.mp4"
    download.value.save_as(edited)
    source, result = read_video(source_clip), read_video(edited)
    assert result.num_frames == source.num_frames == 10 and result.fps == source.fps == Fraction(30000, 1001)
    assert result.has_audio
    assert page.locator("#downloads a[download='ski-comparison.mp4']").count() == 1
    shown = EditRequest(input="ski.mp4", output="ski-edited.mp4", compare="ski-comparison.mp4", prompt=(PROMPT,),
                        structure_level=5, guidance_scale=1, num_inference_steps=3, size=64)
    assert edit_command(shown) in page.inner_text("#command")
    _screenshot(page, tmp_path / "serve.png")

    # an edit that fails says so in the status, and the previous result is not left as if it were this edit's
    page.fill("#prompt textarea", "")
    page.click("#edit-button")
    page.wait_for_function("() => /The edit failed: give --prompt/.test(document.querySelector('#status').innerText)",
                           timeout=EDIT_LIMIT_MS)
    assert "gen1 edit" not in page.inner_text("#command")
    assert page.locator("#downloads a[download]").count() == 0 and page.locator("#output-video video").count() == 0

    # a text file named .mp4 is an error on the page, and the app keeps working
    notes = tmp_path / "notes.mp4"
    notes.write_text("these are not video frames")
    _upload(page, notes)
    toast = page.locator(".toast-body").filter(has_text="notes.mp4")
    toast.wait_for(timeout=EDIT_LIMIT_MS)
    assert "not a readable video" in toast.inner_text()
    assert str(tmp_path) not in toast.inner_text()  # the server's paths stay on the server
    _upload(page, source_clip)
    page.wait_for_selector("#structure-preview img", timeout=EDIT_LIMIT_MS)
    page.fill("#prompt textarea", "a blue floor with green stripes")
    status = _edit_and_wait(page)
    assert "10 frames" in status
    assert "green stripes" in page.inner_text("#command")
    page.close()


PANELS = ["Reference images", "Size and which frames", "Mask: edit only part", "Your own depth", "Advanced"]


def test_every_panel_opened_and_an_edit_with_the_defaults(server, browser, source_clip):
    """Opening the panels shows their empty fields empty, and Edit with every default runs (it used to fail with
    "Value 0 is less than minimum value 1." until a number was typed in)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(server.url)
    page.wait_for_selector("#edit-button")
    _upload(page, source_clip)
    page.wait_for_selector("#structure-preview img", timeout=EDIT_LIMIT_MS)
    for panel in PANELS:
        page.locator("button.label-wrap").filter(has_text=panel).first.click()
    for field in ("max-frames", "window", "overlap"):
        assert page.locator(f"#{field} textarea, #{field} input").first.input_value() == ""
    # the frame to paint and click on goes to the clip's last frame; choosing one shows it on the click canvas
    frame = page.locator("#mask-frame input[type=range]")
    assert frame.get_attribute("max") == "9"
    first_src = page.get_attribute("#click-canvas img", "src")
    frame.fill("6")
    page.wait_for_function("old => document.querySelector('#click-canvas img')?.src !== old", arg=first_src,
                           timeout=EDIT_LIMIT_MS)
    page.fill("#prompt textarea", PROMPT)
    status = _edit_and_wait(page)
    assert "10 frames" in status
    command = page.inner_text("#command")
    assert "--max-frames" not in command and "--window" not in command and "--overlap" not in command
    page.close()


def test_after_a_cancel_the_next_edit_runs(server, browser, source_clip):
    """Cancel stops one edit; the next Edit of the same page runs (every later edit used to be "Edit cancelled")."""
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(server.url)
    page.wait_for_selector("#edit-button")
    _upload(page, source_clip)
    page.wait_for_selector("#structure-preview img", timeout=EDIT_LIMIT_MS)
    page.fill("#prompt textarea", PROMPT)
    page.locator("#steps input[type=number]").fill("100")
    page.locator("#steps input[type=number]").press("Enter")
    page.click("#edit-button")
    page.wait_for_function("() => /Editing/.test(document.querySelector('#status').innerText)")
    page.wait_for_selector("#output-video .progress-text", timeout=EDIT_LIMIT_MS)  # denoising has begun
    page.click("#cancel-button")
    page.wait_for_function("() => /Edit cancelled/.test(document.querySelector('#status').innerText)",
                           timeout=EDIT_LIMIT_MS)
    page.locator("#steps input[type=number]").fill("2")
    page.locator("#steps input[type=number]").press("Enter")
    assert "10 frames" in _edit_and_wait(page)
    page.close()


def _screenshot(page, path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert Image.open(path).size[0] == 1400
    target = os.environ.get("GEN1_SERVE_SCREENSHOT")
    if target:
        shutil.copyfile(path, target)


def test_gradio_client_edit_gives_the_frames_of_gen1_edit(server, source_clip, tmp_path):
    from gradio_client import Client, handle_file

    from gen1.cli import main
    from gen1.media import read_video

    client = Client(server.url, verbose=False, download_files=str(tmp_path / "client"), analytics_enabled=False)
    output, compare, downloads, command, summary = client.predict(
        video=handle_file(str(source_clip)), prompt=PROMPT, structure_level=2.5, num_inference_steps=3, seed=7,
        max_frames=6, api_name="/edit")
    assert "6 frames" in summary and len(downloads) == 2

    # the command line the app shows, run where the files are, writes the same frames
    words = shlex.split(command)
    assert words[:3] == ["gen1", "edit", "ski.mp4"] and "--seed" in words
    words[2] = str(source_clip)
    words[words.index("-o") + 1] = str(tmp_path / "cli.mp4")
    words[words.index("--compare") + 1] = str(tmp_path / "cli-comparison.mp4")
    assert main(words[1:]) == 0
    served, local = read_video(output), read_video(tmp_path / "cli.mp4")
    assert served.num_frames == 6 and served.has_audio
    np.testing.assert_array_equal(served.frames, local.frames)


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_while_editing_exits_cleanly(source_clip, tmp_path, signum):
    """Ctrl-C (or SIGTERM, as a scheduler or `kill` sends it) during an edit cancels it, removes the server's work
    folder with every user's outputs, and exits (Ctrl-C used to abort: "terminate called without an active
    exception", exit -6, with torch's worker threads busy: a server of its own, with two threads)."""
    import signal
    import time

    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    server = Server(tmp_path, "--max-frames", "12", "--max-seconds", "5", "--threads", "2")
    try:
        server.wait_until_up()
        client = Client(server.url, verbose=False, analytics_enabled=False)
        job = client.submit(video=handle_file(str(source_clip)), prompt=PROMPT, num_inference_steps=100,
                            api_name="/edit")
        deadline = time.monotonic() + EDIT_LIMIT_MS / 1000
        while (code := job.status().code) != Status.PROGRESS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert code == Status.PROGRESS  # denoising
        assert list(server.tmp.glob("gen1-serve-*"))  # its work folder, holding this edit's job
        server.process.send_signal(getattr(signal, signum))
        assert server.process.wait(timeout=120) == 0, server.log()
        assert "cancelling the running edit before exiting" in server.log()  # not run to its end, nor aborted
        assert "terminate called" not in server.log()
        assert not list(server.tmp.glob("gen1-serve-*"))  # removed with every user's outputs
    finally:
        server.stop()
