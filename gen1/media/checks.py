"""Argument and path checks shared by reading and writing, and the file suffixes that say what a file is.

Every user error is a ``ValueError`` naming the argument or path and its value; a missing path raises
:class:`MediaNotFoundError`, which is both a ``FileNotFoundError`` and a ``ValueError``.
"""

from __future__ import annotations

import math
import os
import re
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # read_image / PIL read and write these
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif")  # inputs read_video is meant for
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}  # write_video's suffixes -> PyAV container format
OUTPUT_VIDEO_SUFFIXES = tuple(OUTPUT_FORMATS)  # what write_video writes


class MediaNotFoundError(FileNotFoundError, ValueError):
    """A video or image path that does not exist (catchable as FileNotFoundError or ValueError)."""


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a still image (by its suffix, :data:`IMAGE_SUFFIXES`); anything else is read as video."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def natural_key(path: Path) -> list:
    """Sort key for natural order of file names: ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def existing_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, checked to exist and be a regular file (``what`` names it in the error): a directory,
    a FIFO or a device is refused at once, since reading a FIFO with no writer blocks forever."""
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(f"{what} not found: '{path}'")
    if path.is_dir():
        raise ValueError(f"expected {_a(what)}, got a directory: '{path}'")
    if not path.is_file():  # a FIFO, socket or device: reading it could block forever or never end
        raise ValueError(f"expected {_a(what)}, got {_file_kind(path)}, not a regular file: '{path}'")
    return path


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _file_kind(path: Path) -> str:
    """What a path that is neither a regular file nor a directory is, in words."""

    mode = path.stat().st_mode
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "a special file"


def as_fraction(value: Any, name: str) -> Fraction:
    """A positive, finite frame rate as an exact Fraction (floats like 29.97002997 -> 30000/1001)."""
    if isinstance(value, (bool, str)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(value, (int, np.integer, Fraction)):
        result = Fraction(value)
    else:
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a positive number, got {value!r}") from None
        if not math.isfinite(as_float):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        result = Fraction(as_float).limit_denominator(1_000_000)
    if result <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return result


def check_seconds(value: Any, name: str, *, allow_zero: bool) -> float:
    """A finite, non-negative (or positive) number of seconds as float."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return seconds


def check_positive_int(value: Any, name: str) -> int:
    """A positive integer (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
