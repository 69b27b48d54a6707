"""The ``gen1`` command.

Each sub-command lives in its own module under :mod:`gen1.commands` and exposes
``register(subparsers)``, which adds an ``argparse`` parser whose ``func`` default runs the command.
Sub-commands are discovered here, so adding one never touches this file. Modules are imported only
to register their arguments; heavy libraries (torch, diffusers) are imported inside the command
functions so that ``gen1 --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from gen1 import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen1",
        description="Edit videos by structure (depth) and content (prompt or reference image).",
    )
    parser.add_argument("--version", action="version", version=f"gen1 {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    import gen1.commands as commands_pkg

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"gen1.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError) as error:
        # User errors: one clear line, no traceback.
        print(f"gen1 {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
