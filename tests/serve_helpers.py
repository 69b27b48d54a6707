"""A running ``gen1 serve`` for tests: a subprocess on 127.0.0.1 at a free port, with the bundled model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_LIMIT_S = 240  # a loaded 2-core machine needs a minute to import gradio and torch and load the model


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m gen1 serve ARGS`` on 127.0.0.1; gradio's files go to ``workdir``, the server's own temporary
    folders (its work folder) to ``workdir/tmp``; the log to ``workdir/log``."""

    def __init__(self, workdir: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = workdir / "server.log"
        self.tmp = workdir / "tmp"
        self.tmp.mkdir(exist_ok=True)
        env = dict(os.environ, GRADIO_TEMP_DIR=str(workdir / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
                   OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TMPDIR=str(self.tmp))
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gen1", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1",
             *args], stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gen1 serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"gen1 serve did not answer within {STARTUP_LIMIT_S} s:\n{self.log()}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # as Ctrl-C: gen1 serve removes its work folder
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def clip_with_audio(path: Path, clips_dir: Path, frames: int = 10, size: int = 96) -> Path:
    """The first ``frames`` frames of man-skiing.mp4 (which has sound) at ``size``, with their audio."""
    from gen1.media import read_video, write_video

    clip = read_video(clips_dir / "man-skiing.mp4", max_frames=frames, size=size)
    assert clip.has_audio
    return write_video(path, clip.frames, clip.fps, audio_from=clip)


# ----------------------------------------------------------------------------------------------- calling the page in-process
def edit_form(video, steps: int = 1, **settings):
    """An :class:`gen1.serve.service.EditForm` for ``video`` at 64 px, w = 1, ``steps`` steps, a prompt."""
    from gen1.serve.service import EditForm  # lazy: helpers load without gradio until a test needs it

    values = dict(video=str(video), prompt="red stripes", size=64, num_inference_steps=steps, guidance_scale=1.0)
    values.update(settings)
    return EditForm(**values)


def painting(shape, left: int) -> dict:
    """What the page's mask editor sends: the columns left of ``left`` painted on a frame of ``shape``."""
    import numpy as np  # lazy: as above

    layer = np.zeros((*shape[:2], 4), np.uint8)
    layer[:, :left, 3] = 255
    return {"background": np.zeros((*shape[:2], 3), np.uint8), "layers": [layer], "composite": None}


def page_handler(app, name: str):
    """The page's handler ``name`` (a function of app.py's wiring), called as gradio calls it: the request and
    progress it asks for are passed by gradio.helpers.special_args, the request of session ``session`` sending
    ``headers``; ``values`` and ``named`` are its first and named fields (the others at their defaults)."""
    import inspect

    import gradio as gr  # lazy: as above
    from gradio.helpers import special_args

    functions = [block.fn for block in app.fns.values() if getattr(block.fn, "__name__", "") == name]
    assert functions, name
    parameters = inspect.signature(functions[0]).parameters

    def call(*values, session: str, headers: dict | None = None, **named):
        fields = [field for field in parameters if field not in ("request", "progress", "event")]
        given = [named.pop(field) if field in named else (values[index] if index < len(values)
                                                           else parameters[field].default)
                 for index, field in enumerate(fields)]
        assert not named, named
        inputs, *_ = special_args(functions[0], given, request=gr.Request(session_hash=session, headers=headers or {}))
        return functions[0](*inputs)

    return call
