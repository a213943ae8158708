"""User-facing errors: one line that says what is wrong and how to fix it."""

from __future__ import annotations

import sys


class NIDInputError(ValueError):
    """Bad input from the user (data, paths, configs). Printed as one line, without a traceback."""


def _excepthook(exc_type, exc, tb, _previous=sys.excepthook):
    if issubclass(exc_type, NIDInputError):
        print(f"nid-nerf error: {exc}", file=sys.stderr)
        return
    _previous(exc_type, exc, tb)


def install_excepthook() -> None:
    """Print uncaught NIDInputError as a single line (ns-train, scripts); other errors are untouched."""
    if getattr(sys.excepthook, "__name__", "") != "_excepthook":
        sys.excepthook = _excepthook
