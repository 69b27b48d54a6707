"""Atomic file output: write to a temporary file beside the target, then rename.

A crash, an exception or Ctrl-C while writing never leaves a half-written file under the requested
name, and never destroys a file the user already had there (it is replaced only by a complete one).

Temporary names are ``.{target name}.gen1-tmp-{host}-{pid}-{n}{suffix}``: hidden, tied to the target and
to the writing process. A process killed outright (SIGKILL, power cut) cannot remove its temporary file,
so every new write to the same target first removes the temporary files of writers on this host that are
no longer running (:func:`remove_stale_temporaries`); a shared file system's other hosts are left alone.

SIGTERM (what ``kill``, schedulers and containers send) would end the process without any of that cleanup;
:func:`sigterm_as_interrupt` turns it into :class:`Terminated`, a ``KeyboardInterrupt``, so it unwinds exactly
as Ctrl-C does: temporaries removed, previous outputs kept.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import os
import re
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Iterator

TEMP_MARKER = ".gen1-tmp-"
_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"
_counter = itertools.count()


def check_output_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a ``Path`` after checking that its directory exists.

    Raises ``ValueError`` naming the missing directory, so that a long job fails before it starts
    rather than after it has done all its work.
    """
    path = Path(path)
    parent = _parent(path)
    if not parent.is_dir():
        raise ValueError(f"output directory does not exist: '{parent}' (for output '{path}')")
    if path.is_dir():
        raise ValueError(f"output path is a directory, expected a file: '{path}'")
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """:func:`check_output_path`, then prove the directory takes new files by creating and removing one.

    The probe is named like the temporary file of a real write, so it exercises exactly what the write
    will do; permission bits alone cannot tell (root ignores them, read-only mounts and full quotas do not
    show in them). Raises ``ValueError`` naming the directory and the reason.
    """
    target = check_output_path(path)
    try:
        probe = _create_temporary(target, "")
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"cannot write to output directory '{_parent(target)}': {reason} "
                         f"(for output '{target}')") from None
    probe.unlink(missing_ok=True)
    return target


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would race with other threads later.
_UMASK = _read_umask()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _temporary_name(target: Path, suffix: str) -> Path:
    return _parent(target) / f".{target.name}{TEMP_MARKER}{_HOST}-{os.getpid()}-{next(_counter)}{suffix}"


def _create_temporary(target: Path, suffix: str) -> Path:
    """Create an empty private file with a fresh temporary name for ``target`` and return its path."""
    while True:
        tmp = _temporary_name(target, suffix)
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # a leftover of an earlier process with our pid: take the next number
            continue
        os.close(fd)
        return tmp


def _create_temporary_directory(target: Path, suffix: str) -> Path:
    while True:
        tmp = _temporary_name(target, suffix)
        try:
            tmp.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return tmp


def _process_running(pid: int) -> bool:
    """Whether process ``pid`` exists. Outside POSIX every writer counts as running (nothing is removed)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders of earlier writes to ``path`` whose writer is gone.

    Only names made by this module on this host (``.{name}.gen1-tmp-{host}-{pid}-...``) are considered, and
    only those whose process no longer exists; the paths removed are returned.
    """
    target = Path(path)
    pattern = re.compile(re.escape(f".{target.name}{TEMP_MARKER}{_HOST}-") + r"(\d+)-\d+(\..*)?")
    removed = []
    for candidate in _parent(target).glob(glob.escape(f".{target.name}{TEMP_MARKER}{_HOST}-") + "*"):
        match = pattern.fullmatch(candidate.name)
        if match is None or _process_running(int(match.group(1))):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    The temporary name keeps the target's suffix (``.mp4``, ``.safetensors``...) because some
    writers choose the format from it. On any exception the temporary file is removed and the
    target is left untouched.
    """
    target = check_output_path(path)
    remove_stale_temporaries(target)
    tmp = _create_temporary(target, f".tmp{target.suffix}")
    try:
        yield tmp
        # the file was created private (0600); give the result the mode a plain open() would have.
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
    target = Path(path)
    _parent(target).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = _create_temporary_directory(target, ".tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~_UMASK)  # created 0700
    for file in tmp.rglob("*"):
        if file.is_file() and not file.is_symlink():
            # the mode a plain open() gives: safetensors writes its files 0600, so a model folder's weights (and an
            # adapter's embeddings) were readable by their owner alone
            os.chmod(file, 0o666 & ~_UMASK)
            _fsync(file)
    if target.exists():
        old = _create_temporary_directory(target, ".old")
        os.replace(target, old / "previous")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def write_json(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (its directory must exist); return the path."""

    with atomic_path(check_output_path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return Path(path)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C's exception so that whatever cleans up after Ctrl-C cleans up after it too."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread.

    Handlers can only be set from the main thread; elsewhere this does nothing. Code that handles Ctrl-C its own
    way (training saves a checkpoint first: :mod:`gen1.training.interrupt`) installs its own handler for both
    signals inside this block; the previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
