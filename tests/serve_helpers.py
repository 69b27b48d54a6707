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
