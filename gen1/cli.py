"""The ``gen1`` command.

Each sub-command lives in its own module under :mod:`gen1.commands` and exposes
``register(subparsers)``, which adds an ``argparse`` parser whose ``func`` default runs the command.
Sub-commands are discovered here, so adding one never touches this file. Modules are imported only
to register their arguments; heavy libraries (torch, diffusers) are imported inside the command
functions so that ``gen1 --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import sys
import warnings

from gen1 import __version__


class OneLineParser(argparse.ArgumentParser):
    """argparse, its errors one line (what is wrong, and where the options are listed) instead of the usage block
    above them: a mistyped value reads at a glance, as every other refusal of gen1 does. Sub-commands' parsers are
    of this class too (``add_subparsers`` makes its parsers of the parent's class)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gen1",
        description="Edit videos by structure (depth) and content (prompt or reference image).",
    )
    parser.add_argument("--version", action="version", version=f"gen1 {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    import gen1.commands as commands_pkg  # lazy: keeps this module's import light (no torch when it loads)

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"gen1.commands.{info.name}")
        module.register(subparsers)
    parser.commands = subparsers.choices  # each sub-command's parser, by name: a mistyped flag is matched against it
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. User errors (``ValueError``, ``OSError``) print one line and return 2; Ctrl-C prints
    "interrupted" and returns 130 (the shell's code for SIGINT); SIGTERM unwinds the same way, prints "terminated"
    and returns 143. Outputs are written atomically (:mod:`gen1.atomic`), so none of these leaves a partial output
    or replaces an existing one."""
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.atomic import Terminated, sigterm_as_interrupt

    name = "gen1"
    try:
        # SIGTERM unwinds like Ctrl-C (temporaries removed, training checkpointed); warnings print as one line
        with sigterm_as_interrupt(), _warnings_as_lines():
            parser = build_parser()
            args, unknown = parser.parse_known_args(argv)
            if getattr(args, "func", None) is None:
                if unknown:
                    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
                parser.print_help()
                return 0
            name = f"gen1 {args.command}"
            if unknown:
                _unrecognized(parser, args.command, unknown)
            result = args.func(args)
    except Terminated:
        print(f"{name}: terminated (SIGTERM)", file=sys.stderr)
        return 143  # 128 + SIGTERM, as the shell reports a process that SIGTERM ended
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        print(f"{name}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return int(result or 0)


@contextlib.contextmanager
def _warnings_as_lines():
    """Print each warning as one line, ``warning: MESSAGE``, instead of Python's ``file:line: UserWarning: ...``
    followed by the source line that raised it (which tells a user nothing). Only the format changes: where
    warnings go (stderr, a test's ``pytest.warns``, a caller's filters) stays as it was."""
    previous = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
        return f"warning: {text}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _unrecognized(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> None:
    """Exit (2) naming the sub-command whose flags these are not, with the nearest flags it has."""
    import difflib  # lazy: only a mistyped flag needs it

    command_parser = parser.commands[command]
    known = [flag for action in command_parser._actions for flag in action.option_strings]
    hints = [match for word in unknown if word.startswith("--")
             for match in difflib.get_close_matches(word.split("=")[0], known, n=1)]
    hint = f"; did you mean {', '.join(dict.fromkeys(hints))}?" if hints else ""
    command_parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def _one_line(error: BaseException) -> str:
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
