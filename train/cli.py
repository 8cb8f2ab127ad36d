"""Shared CLI glue for the training commands: known errors become one line, not a traceback."""

from __future__ import annotations

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
