"""One exception root for everything pyinspect raises on purpose.

Each subclass also derives from the built-in exception a caller would naturally catch, so
``except ValueError`` keeps working for people who do not know pyinspect's types. The small
argument checks at the end (``check_int``, ``check_choice``, ``suggest``) word every such error
the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class PyInspectError(Exception):
    """Root of every error pyinspect raises deliberately."""


class InputError(PyInspectError, ValueError):
    """A frame, array or argument has the wrong shape, dtype, size or value."""


class InputTypeError(PyInspectError, TypeError):
    """An argument is of the wrong Python type."""


class ModelFileError(PyInspectError, FileNotFoundError):
    """A model file is missing, unreadable, truncated or not what its suffix says."""


class SpecError(PyInspectError, ValueError):
    """A sidecar (``model.onnx.json`` / ``model.plan.json``) is missing, invalid or mismatched."""


class BackendUnavailableError(PyInspectError, ImportError):
    """A backend's library (or device) is not installed or not present on this machine."""


class BackendError(PyInspectError, RuntimeError):
    """A backend failed while loading or running a model."""


def suggest(name: str, options: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]: a bool, float or string is an
    ``InputTypeError`` naming the parameter, an int out of range an ``InputError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        what = f"an int in {minimum}..{maximum}" if maximum is not None else f"an int >= {minimum}"
        msg = f"{name} must be {what}, got {type(value).__name__} {value!r}"
        raise InputTypeError(msg)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        msg = f"{name} must be {bound}, got {value}"
        raise InputError(msg)
    return value


def check_choice(what: str, value: str, choices: Sequence[str], error: type[Exception]) -> str:
    """``value`` when it is one of ``choices``; otherwise raise ``error``, naming ``what`` (e.g.
    ``"sink 'm': spool_policy"``), the choices and the value given."""
    if value not in choices:
        msg = f"{what} must be one of {list(choices)}, got {value!r}"
        raise error(msg)
    return value
