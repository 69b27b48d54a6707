"""A command run in a child process and sent a real signal once its log shows it has reached a given point: how the
tests check what Ctrl-C (SIGINT) and SIGTERM do to a command at work."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The environment of a child ``python -m gen1`` / ``python -c``: this checkout's gen1 first on its path, whatever
#: PYTHONPATH says.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def signal_when_logged(command: list[str], log: Path, marker: str, signum, *, what: str, cwd: Path,
                       both_streams: bool = False, timeout_s: float = 120) -> int:
    """Run ``command`` with its stderr (and its stdout too with ``both_streams``, else stdout is dropped) written to
    ``log``; once ``marker`` shows in the log, send it ``signum``; return its exit code (waiting up to
    ``timeout_s``). It must not exit before ``marker`` shows (the log is the assertion's message) and ``marker``
    must show within 300 s (``what`` names it: a guard against a hang, not a timing assertion); the child is killed
    if anything goes wrong."""
    with open(log, "wb") as stream:
        process = subprocess.Popen(command, stdout=stream if both_streams else subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT if both_streams else stream, env=ENV, cwd=cwd)
        try:
            deadline = time.monotonic() + 300
            while marker not in log.read_text(errors="replace"):
                assert process.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, f"{what} never started"
                time.sleep(0.05)
            process.send_signal(signum)
            return process.wait(timeout=timeout_s)
        finally:
            if process.poll() is None:
                process.kill()
