"""Disk used by a ``gen1 serve`` app's uploads: bounded in total as each upload arrives, and per session.

gradio stores an upload before any of the app's functions sees it, so the total is kept where uploads arrive:
:class:`UploadQuota`, an ASGI middleware in front of gradio's upload route, refuses (HTTP 413) an upload that
would take the upload folder and the app's work folder over their bound, judged on the request's declared length
before a byte is stored. The per-session bound and the clean-up when a session ends are
:class:`gen1.serve.service.EditService`'s (:meth:`~gen1.serve.service.EditService.end_session`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

MB = 2**20


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 if it does not exist); files removed meanwhile are skipped."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class UploadQuota:
    """ASGI middleware: a POST to a path ending in ``/upload`` (gradio's upload route) whose ``Content-Length``
    would take the bytes under ``folders()`` over ``total_bytes`` is answered 413 with one line, and one without
    a length 411; every other request passes through untouched."""

    def __init__(self, app, *, folders: Callable[[], Iterable[Path]], total_bytes: int):
        self.app, self.folders, self.total_bytes = app, folders, int(total_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/upload"):
            refusal = self._refusal(dict(scope["headers"]).get(b"content-length"))
            if refusal is not None:
                from starlette.responses import PlainTextResponse

                status, message = refusal
                await PlainTextResponse(message, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, length: bytes | None) -> tuple[int, str] | None:
        if length is None or not length.strip().isdigit():
            return 411, "an upload must state its length (Content-Length)"
        used = sum(folder_bytes(Path(folder)) for folder in self.folders())
        if used + int(length) > self.total_bytes:
            return 413, (f"this server's upload space is full ({used / MB:.0f} MB of {self.total_bytes / MB:.0f} MB "
                         f"in use, this upload {int(length) / MB:.1f} MB): try again later")
        return None


__all__ = ["UploadQuota", "folder_bytes"]
