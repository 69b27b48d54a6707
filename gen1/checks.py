"""Checks of user-given values that the library and both front ends share: numbers, seeds, file names in errors,
and model files (JSON configs and safetensors headers).

Every check fails with a ``ValueError`` whose message names the argument (the ``label`` given: a flag on the
command line, a keyword in Python) and the bad value, so that a mistake is one clear line, caught before any
heavy work.
"""

from __future__ import annotations

import argparse
import contextlib
import decimal
import json
import math
import os
import re
from pathlib import Path

SEED_MAX = 2**64 - 1  # the range torch.Generator.manual_seed takes without wrapping


# ----------------------------------------------------------------------------------------------- numbers
def check_number(flag: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> None:
    """``value`` is a finite number within [low, high] (``low_open``: (low, high]); else ``ValueError``."""
    above = low is None or (value > low if low_open else value >= low)
    ok = math.isfinite(value) and above and (high is None or value <= high)
    if not ok:
        if low is not None and high is not None:
            rule = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        elif low is not None:
            rule = f"{'>' if low_open else '>='} {low:g}"
        else:
            rule = f"<= {high:g}"
        raise ValueError(f"{flag} must be a finite number {rule}, got {value:g}")


def check_integer(flag: str, value, *, low: int | None = None, high: int | None = None) -> None:
    """``value`` is an integer within [low, high]; else ``ValueError`` naming ``flag``."""
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            rule = f">= {low}"
        elif low is None:
            rule = f"<= {high}"
        else:
            rule = f"from {low} to {high}"
        raise ValueError(f"{flag} must be an integer {rule}, got {value}")


def seed_value(text: str) -> int:
    """argparse type of ``--seed``: a whole number, also written as ``1e6``; :func:`check_seed` checks the range."""
    try:
        number = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'") from None
    if not (number.is_finite() and number == number.to_integral_value()):
        raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'")
    return int(number)


def check_seed(flag: str, seed: int | None) -> None:
    if seed is not None:
        check_integer(flag, seed, low=0, high=SEED_MAX)


# gen1.media names its keyword arguments in errors; the user of a command knows the flags.
_READ_ARGUMENT_FLAGS = {"target_fps": "--fps", "start": "--start", "duration": "--duration"}


@contextlib.contextmanager
def errors_naming(flag: str):
    """Prefix the ``ValueError`` of a media read with ``flag``, with reading arguments named by their flags."""
    try:
        yield
    except ValueError as error:
        text = re.sub(r"\b(target_fps|start|duration)=", lambda m: _READ_ARGUMENT_FLAGS[m.group(1)] + " ", str(error))
        raise ValueError(f"{flag}: {text.replace('; use read_image() for images', '')}") from None


# ----------------------------------------------------------------------------------------------- model files
def safetensors_metadata(path: Path) -> dict:
    """The metadata of a safetensors file, after checking its header and that the file holds all its data.

    Reads the header only (no tensor is loaded). ``ValueError`` says what is wrong (truncated, not a
    safetensors file).
    """
    from safetensors import SafetensorError, safe_open  # lazy: safetensors is heavy and only this path needs it

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        reason = str(error).replace("Error while deserializing header: ", "")
        if "not fully covered" in reason:
            reason = "truncated: the file is shorter than its header says"
        raise ValueError(f"not a complete safetensors file ({reason})") from None


def check_model_files(flag: str, directory: str | os.PathLike) -> None:
    """Parse every JSON file and check every safetensors header under a saved model ``directory``.

    Catches truncated weights and broken configs before any loading, naming the flag and the file.
    """
    directory = Path(directory)
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                raise ValueError(f"{flag} '{directory}': '{path}' is not valid JSON ({error})") from None
        elif path.suffix == ".safetensors":
            try:
                safetensors_metadata(path)
            except ValueError as error:
                raise ValueError(f"{flag} '{directory}': '{path}' is {error}") from None


def load_failure(flag: str, path, error: BaseException) -> ValueError:
    """The ``ValueError`` for a model that passed :func:`check_model_files` but still failed to load."""
    return ValueError(f"{flag} '{path}' could not be loaded ({type(error).__name__}: {error})")
