"""Atomic file output: write to a temporary file beside the target, then rename.

A crash, an exception or Ctrl-C while writing never leaves a half-written file under the requested
name, and never destroys a file the user already had there (it is replaced only by a complete one).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def check_output_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a ``Path`` after checking that its directory exists.

    Raises ``ValueError`` naming the missing directory, so that a long job fails before it starts
    rather than after it has done all its work.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"output directory does not exist: '{parent}' (for output '{path}')")
    if path.is_dir():
        raise ValueError(f"output path is a directory, expected a file: '{path}'")
    return path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would race with other threads later.
_UMASK = _read_umask()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    The temporary name keeps the target's suffix (``.mp4``, ``.safetensors``...) because some
    writers choose the format from it. On any exception the temporary file is removed and the
    target is left untouched.
    """
    target = check_output_path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give the result the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync(tmp)  # the data reaches the disk before the name does (a power cut leaves old or new)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it onto ``path`` when the block succeeds.

    Used for checkpoints and ``save_pretrained`` folders: a reader sees either the previous complete
    directory or the new complete one. An existing directory at ``path`` is swapped out only after the
    new one is complete, then deleted.
    """
    import shutil

    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700
    for file in tmp.rglob("*"):
        if file.is_file():
            _fsync(file)
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
        os.replace(target, old / "previous")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def write_json(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (its directory must exist); return the path."""
    import json

    with atomic_path(check_output_path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return Path(path)
