"""User-facing errors: one readable message instead of a traceback.

Library code raises :class:`HeadposeError` for anything a user can fix (a bad parameter, a missing
or corrupt file). Entry points (the stage scripts and the ``headpose`` command) wrap their work in
:func:`exit_on_error`, the one error path: it prints ``error: <message>`` and exits with status
2. An ``OSError`` that escaped the library (a file that cannot be read or written: disk full,
permission denied) is reported the same way, as the file and the reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


class HeadposeError(Exception):
    """A problem with the user's input or environment, explained in the message."""


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate an entry point so a HeadposeError becomes one line on stderr and exit code 2."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except HeadposeError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            print(f"error: {where}{error.strerror or error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted: no output was left half-written", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
