"""User-facing errors: one readable message instead of a traceback.

Library code raises :class:`HeadposeError` for anything a user can fix (a bad parameter, a missing
or corrupt file). Entry points (the stage scripts and the ``headpose`` command) wrap their work in
:func:`exit_on_error`, the one error path: it prints ``error: <message>`` and exits with status
2. An ``OSError`` that escaped the library (a file that cannot be read or written: disk full,
permission denied) is reported the same way, as the file and the reason. SIGINT (Ctrl-C) and
SIGTERM (``kill``, a scheduler's stop) end the run with one line too: SIGTERM is raised as
:class:`Terminated` where the process was, so every ``finally`` runs and temporaries go. Python
runs that handler only when the main thread runs Python, which a wait in C (a pool, a join, a
lock) may delay for ever; so a watchdog thread, woken by the signal itself (CPython's wakeup fd),
ends the process with ``os._exit(143)`` when it is still running :data:`SIGTERM_GRACE_S` seconds
after the first SIGTERM, or at once on a second one (temporaries left behind are removed by the
next write, as after SIGKILL).
A value quoted in a message goes through :func:`shorten` (a name: :func:`clip`), so no input
(a huge list, a long name) makes a message, or the time to build it, unbounded.
"""

from __future__ import annotations

import contextlib
import os
import reprlib
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")

SIGTERM_GRACE_S = 5.0
"""Seconds a SIGTERMed entry point has for its tidy exit before the watchdog ends it."""
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


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


class _SigtermWatchdog:
    """A daemon thread that reads the signal numbers CPython's C-level handler writes to the
    wakeup fd, in whatever thread the signal lands and wherever the main thread is waiting.
    After the first SIGTERM it allows ``grace_s`` seconds for the tidy exit, then ends the
    process; a second SIGTERM ends it at once. :meth:`disarm` stops it (the entry point ended)."""

    _DISARM = b"\0"  # no signal is numbered 0

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # CPython requires a non-blocking wakeup fd
        # the thread is started with SIGINT and SIGTERM blocked, so it never takes them from
        # the main thread (whose held-off renames, interruptions_held, then stay held off)
        held = {signal.SIGINT, signal.SIGTERM}
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            self.thread = threading.Thread(
                target=self._watch, name="headpose-sigterm-watchdog", daemon=True
            )
            self.thread.start()
        except RuntimeError:  # "can't start new thread"
            os.close(self.read_fd)
            os.close(self.write_fd)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)

    def _watch(self) -> None:
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.read_fd], [], [], timeout)
            if not ready:
                _hard_exit(f"still running {self.grace_s:g} s after SIGTERM")
            data = os.read(self.read_fd, 512)
            if not data or self._DISARM[0] in data:
                return
            if signal.SIGTERM in data:
                if deadline is not None or data.count(signal.SIGTERM) > 1:
                    _hard_exit("a second SIGTERM")
                deadline = time.monotonic() + self.grace_s

    def disarm(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.write_fd, self._DISARM)
        self.thread.join()
        os.close(self.read_fd)
        os.close(self.write_fd)


def _hard_exit(why: str) -> None:
    """End the process now, from any thread: no handler, ``finally`` or lock is waited for."""
    with contextlib.suppress(OSError):
        os.write(2, f"terminated (SIGTERM): {why}, stopped at once\n".encode())
    os._exit(SIGTERM_EXIT_CODE)


def _arm_watchdog() -> tuple[_SigtermWatchdog | None, int]:
    """Start a watchdog and make its pipe the wakeup fd (main thread only); returns it (None
    where another wakeup fd is in use, an event loop's say, or signals cannot be masked) and
    the previous wakeup fd."""
    if not hasattr(signal, "pthread_sigmask"):
        return None, -1
    try:
        watchdog = _SigtermWatchdog(SIGTERM_GRACE_S)
    except (OSError, RuntimeError):  # no fd or thread to spare (a memory limit): run without
        return None, -1
    previous = signal.set_wakeup_fd(watchdog.write_fd, warn_on_full_buffer=False)
    if previous != -1:  # someone else's: leave it in place, without a watchdog
        signal.set_wakeup_fd(previous)
        watchdog.disarm()
        return None, previous
    return watchdog, previous


# The forking thread's signal mask from before a fork inside an entry point, to put back after it.
_mask_before_fork = threading.local()


def _hold_sigterm_over_fork() -> None:
    """Inside an entry point, fork with SIGTERM blocked: a child that its parent stops at once
    (a pool closed before all its workers got going) then keeps the signal pending until
    :func:`_default_sigterm_in_child` has taken the parent's handler and wakeup fd away, instead of
    writing SIGTERM into the parent's watchdog pipe (which would end the parent
    :data:`SIGTERM_GRACE_S` seconds later)."""
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        _mask_before_fork.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _restore_mask_after_fork() -> None:
    mask = getattr(_mask_before_fork, "mask", None)
    if mask is not None:
        _mask_before_fork.mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _default_sigterm_in_child() -> None:
    """A forked child (a pool's or a loader's worker) gets SIGTERM's default action back: its
    parent stops it with SIGTERM, which must end it even where it is blocked in C code and the
    Python handler could never run. Its signals no longer wake the parent's watchdog; a SIGTERM
    that came before this (held by :func:`_hold_sigterm_over_fork`) is delivered after it."""
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        with contextlib.suppress(ValueError):  # not the main thread: nothing installed there
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
    _restore_mask_after_fork()  # the forking thread is the child's only one: its local survives


# os.register_at_fork and signal.pthread_sigmask exist where fork does (Unix)
os.register_at_fork(
    before=_hold_sigterm_over_fork,
    after_in_parent=_restore_mask_after_fork,
    after_in_child=_default_sigterm_in_child,
)


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate an entry point so a HeadposeError becomes one line on stderr and exit code 2,
    and SIGTERM ends it: tidily where Python can run, by the watchdog where it cannot."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            watchdog, previous_wakeup_fd = _arm_watchdog()
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
            raise SystemExit(SIGTERM_EXIT_CODE) from None
        except KeyboardInterrupt:
            print("interrupted: no output was left half-written", file=sys.stderr)
            raise SystemExit(130) from None
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)
                if watchdog is not None:
                    signal.set_wakeup_fd(previous_wakeup_fd)
                    watchdog.disarm()

    return wrapper
