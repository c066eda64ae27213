"""User-facing errors: one readable message instead of a traceback.

Library code raises :class:`HeadposeError` for anything a user can fix (a bad parameter, a missing
or corrupt file). Entry points (the stage scripts and the ``headpose`` command) wrap their work in
:func:`exit_on_error`, the one error path: it prints ``error: <message>`` and exits with status
2. An ``OSError`` that escaped the library (a file that cannot be read or written: disk full,
permission denied) is reported the same way, as the file and the reason. SIGINT (Ctrl-C) and
SIGTERM (``kill``, a scheduler's stop) end the run with one line too: SIGTERM is raised as
:class:`Terminated` where the process was, so every ``finally`` runs and temporaries go.
A value quoted in a message goes through :func:`shorten` (a name: :func:`clip`), so no input
(a huge list, a long name) makes a message, or the time to build it, unbounded.
"""

from __future__ import annotations

import contextlib
import os
import reprlib
import signal
import sys
import threading
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


# The longest quotation of a value in a message (characters).
QUOTED_VALUE_CHARS = 80


def _bounded_repr() -> reprlib.Repr:
    bounded = reprlib.Repr()
    bounded.maxlevel = 3
    bounded.maxlist = bounded.maxtuple = bounded.maxset = bounded.maxdict = 6
    bounded.maxstring = bounded.maxother = bounded.maxlong = QUOTED_VALUE_CHARS
    return bounded


_REPR = _bounded_repr()


def shorten(value: object, limit: int = QUOTED_VALUE_CHARS) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters (``...`` marks a cut): a few
    items of each list or mapping, a few levels deep, so its cost is bounded too."""
    try:
        return clip(_REPR.repr(value), limit)
    except ValueError:  # an int past Python's digit limit for str()
        return f"<a {type(value).__name__} too long to print>"


def clip(text: str, limit: int = QUOTED_VALUE_CHARS) -> str:
    """``text`` for a message as it is (no quotes), cut to at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HeadposeError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _default_sigterm_in_child() -> None:
    """A forked child (a pool's or a loader's worker) gets SIGTERM's default action back: its
    parent stops it with SIGTERM, which must end it even where it is blocked in C code and the
    Python handler could never run."""
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        with contextlib.suppress(ValueError):  # not the main thread: nothing installed there
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_sigterm_in_child)


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate an entry point so a HeadposeError becomes one line on stderr and exit code 2."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return main(*args, **kwargs)
        except HeadposeError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            print(f"error: {where}{error.strerror or error}", file=sys.stderr)
            raise SystemExit(2) from None
        except Terminated:
            print("terminated (SIGTERM): no output was left half-written", file=sys.stderr)
            raise SystemExit(128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            print("interrupted: no output was left half-written", file=sys.stderr)
            raise SystemExit(130) from None
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper
