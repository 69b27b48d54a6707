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

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable, Mapping

from gen1.checks import check_integer


# ----------------------------------------------------------------------------------------------- threads
class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that ends an option's text with its default when there is one to tell: not for required options,
    flags, options whose default is None (nothing given: the help says what happens) or whose help already
    names its default. argparse's ArgumentDefaultsHelpFormatter printed "(default: None)" after every one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or "default" in text or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def add_threads_argument(parser, default_help: str = "one per core") -> None:
    """Add ``--threads N`` (CPU threads for torch and OpenCV) to a command's parser."""
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help=f"CPU threads for torch and OpenCV (default: {default_help}; at most one per core). Lower it when the "
        "CPU is shared with other work: oversubscribed threads can make a run many times slower",
    )


def apply_threads(threads: int | None) -> int | None:
    """Use ``threads`` CPU threads in torch (intra-op, and inter-op while torch still allows it) and OpenCV, at most
    one per core (``os.cpu_count``; a larger count is capped with a line on stderr); returns the count used.

    ``None`` leaves the defaults (torch follows ``OMP_NUM_THREADS`` when it is set).
    """
    if threads is None:
        return None
    check_integer("--threads", threads, low=1)
    cores = os.cpu_count() or 1
    if threads > cores:  # more only adds overhead, and thousands exhaust the process's memory maps (PyAV, OpenMP)
        print(f"gen1: --threads {threads} is more than this machine's {cores} CPU cores; using {cores}",
              file=sys.stderr)
        threads = cores
    import cv2  # lazy: cv2 is heavy and only this path needs it
    import torch  # lazy: torch is heavy and only this path needs it

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only possible before torch's first parallel work; the intra-op count is what matters
        pass
    cv2.setNumThreads(threads)
    return threads


# ----------------------------------------------------------------------------------------------- device
DTYPES = ("fp32", "fp16", "bf16")


def add_device_arguments(group) -> None:
    """Add ``--device`` and ``--dtype`` (where and in which precision a pipeline runs)."""
    group.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    group.add_argument("--dtype", choices=DTYPES, help="model dtype (default: fp16 on cuda, fp32 on cpu)")


def device_and_dtype(args):
    """``(torch.device, torch.dtype)`` from ``--device`` / ``--dtype``; ``ValueError`` naming the flag."""
    import torch  # lazy: torch is heavy and only this path needs it

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda, got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    name = args.dtype or ("fp16" if device.startswith("cuda") else "fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
    return torch.device(device), dtype


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
    from gen1.atomic import check_writable  # lazy: keeps this module's import light (no torch when it loads)

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


