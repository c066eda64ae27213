"""User-facing errors: one readable message instead of a traceback.

Library code raises :class:`HeadposeError` for anything a user can fix (a bad parameter, a missing
or corrupt file). Entry points (the stage scripts and the ``headpose`` command) wrap their work in
:func:`exit_on_error`, the one error path: it prints ``error: <message>`` and exits with status
2. An ``OSError`` that escaped the library (a file that cannot be read or written: disk full,
permission denied) is reported the same way, as the file and the reason. SIGINT (Ctrl-C) and
SIGTERM (``kill``, a scheduler's stop) end the run with one line too: SIGTERM is raised as
:class:`Terminated` where the process was, so every ``finally`` runs and temporaries go.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


class HeadposeError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""


_HANDLER_PID: list[int] = []  # the process whose entry point installed the SIGTERM handler


def _raise_terminated(signum: int, frame: object) -> None:
    if os.getpid() not in _HANDLER_PID:  # a forked worker (a pool stops its workers so): end
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as SIGTERM ends a process, silently
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate an entry point so a HeadposeError becomes one line on stderr and exit code 2."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            _HANDLER_PID[:] = [os.getpid()]
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
