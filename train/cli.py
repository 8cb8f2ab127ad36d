"""Shared CLI glue for the training commands: one parser shape, and known errors become one line,
not a traceback."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from pyinspect.errors import PyInspectError


def friendly_errors(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Print ``error: <message>`` and return 2 for the errors a user can fix (bad paths, data,
    checkpoints, weights); anything else is a bug and keeps its traceback."""
    from train.models import ModelError

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except (PyInspectError, ModelError, FileNotFoundError, KeyError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"error: {text}", file=sys.stderr)
            return 2

    return wrapper


def command_parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``python -m train <command>``: the module docstring as its help text."""
    return argparse.ArgumentParser(
        prog=f"python -m train {command}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
