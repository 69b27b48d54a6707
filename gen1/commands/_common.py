"""Checks and options that several ``gen1`` commands share.

Every check here runs before a command loads a model or decodes a video, and fails with a ``ValueError``
(or ``FileNotFoundError``) whose message names the flag and the file, so that ``gen1.cli.main`` prints one
line instead of a traceback, and a mistake costs seconds rather than a whole run.

Commands use them as::

    add_threads_argument(parser)                 # in register()
    check_input_file("--mask", args.mask)        # in run(), before any heavy work
    check_output_file("-o/--output", args.output)
    refuse_overwriting_inputs({"-o/--output": args.output}, {"INPUT": args.input, "--mask": args.mask})
    apply_threads(args.threads)                  # after the checks, before the work
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

SEED_MAX = 2**64 - 1  # the range torch.Generator.manual_seed takes without wrapping


# ----------------------------------------------------------------------------------------------- threads
def add_threads_argument(parser) -> None:
    """Add ``--threads N`` (CPU threads for torch and OpenCV) to a command's parser."""
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads for torch and OpenCV (default: one per core). Lower it when the CPU is shared with "
        "other work: oversubscribed threads can make a run many times slower",
    )


def apply_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch (intra-op, and inter-op while torch still allows it) and OpenCV.

    ``None`` leaves the defaults (torch follows ``OMP_NUM_THREADS`` when it is set).
    """
    if threads is None:
        return
    check_integer("--threads", threads, low=1)
    import cv2
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only possible before torch's first parallel work; the intra-op count is what matters
        pass
    cv2.setNumThreads(threads)


# ----------------------------------------------------------------------------------------------- device
DTYPES = ("fp32", "fp16", "bf16")


def add_device_arguments(group) -> None:
    """Add ``--device`` and ``--dtype`` (where and in which precision a pipeline runs)."""
    group.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    group.add_argument("--dtype", choices=DTYPES, help="model dtype (default: fp16 on cuda, fp32 on cpu)")


def device_and_dtype(args):
    """``(torch.device, torch.dtype)`` from ``--device`` / ``--dtype``; ``ValueError`` naming the flag."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda, got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    name = args.dtype or ("fp16" if device.startswith("cuda") else "fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
    return torch.device(device), dtype


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
    import argparse
    import decimal

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


# ----------------------------------------------------------------------------------------------- files
def check_input_file(flag: str, value: str | os.PathLike | None, *, directory_ok: bool = False) -> None:
    """``value`` (if given) exists, and is a file unless ``directory_ok``."""
    if value is None:
        return
    path = Path(value)
    if not path.exists():
        raise FileNotFoundError(f"{flag} {'path' if directory_ok else 'file'} not found: '{value}'")
    if path.is_dir() and not directory_ok:
        raise ValueError(f"{flag} '{value}' is a directory, expected a file")


def check_output_file(flag: str, value: str | os.PathLike, suffixes: Iterable[str] | None = None) -> Path:
    """``value`` has one of ``suffixes`` (if given) and can be written: its directory exists and takes new files."""
    from gen1.atomic import check_writable

    path = Path(value)
    if suffixes is not None:
        suffixes = sorted(suffixes)
        if path.suffix.lower() not in suffixes:
            raise ValueError(f"{flag} must end in {', '.join(suffixes)}, got '{value}'")
    try:
        return check_writable(path)
    except ValueError as error:
        raise ValueError(f"{flag}: {error}") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same inode when both exist (hard links too), else the same
    path once symbolic links, ``..`` and the working directory are resolved."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def refuse_overwriting_inputs(outputs: Mapping[str, str | os.PathLike | None],
                              inputs: Mapping[str, str | os.PathLike | Iterable | None]) -> None:
    """``ValueError`` if an output would overwrite an input, or two outputs are one file.

    ``outputs`` / ``inputs`` map flag names to a path, a list of paths (repeatable flags) or ``None``.
    """
    given_outputs = [(flag, path) for flag, path in outputs.items() if path is not None]
    for flag, value in inputs.items():
        values = [] if value is None else [value] if isinstance(value, (str, os.PathLike)) else list(value)
        for path in values:
            for out_flag, out_path in given_outputs:
                if same_file(out_path, path):
                    raise ValueError(f"{out_flag} '{out_path}' is the same file as {flag} '{path}'; "
                                     "refusing to overwrite an input: choose another output path")
    for i, (flag, path) in enumerate(given_outputs):
        for other_flag, other in given_outputs[i + 1:]:
            if same_file(path, other):
                raise ValueError(f"{other_flag} must differ from {flag}, got '{other}' for both")


# gen1.video names its keyword arguments in errors; the user of a command knows the flags.
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
    from safetensors import SafetensorError, safe_open

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
