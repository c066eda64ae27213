"""What keeps the ``slow`` marker honest: while a test that is not marked slow runs (its
fixtures' setup and teardown included), starting ``dvc`` or torchrun, exporting to ONNX or
taking an optimizer step inside the library (a training run) fails it with "mark this test
slow". tests/conftest.py installs :func:`guard` around every test.

The hooks are low-level on purpose, so that moving library code around does not blind them:
``subprocess.Popen`` and ``os.exec*`` (what every child process goes through; the program's
name, or ``python -m MODULE``, is checked), ``torch.onnx.export`` (looked up at call time by
the exporter) and torch's global optimizer step pre-hook (a step counts when a frame of the
``headpose`` package is on the stack: a test stepping an optimizer itself is no training run).
Not seen: training or exporting inside a child ``python`` process.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

SLOW_PROGRAMS = frozenset({"dvc", "torchrun"})
SLOW_MODULES = frozenset({"dvc", "torch.distributed.run", "torch.distributed.launch"})
EXEC_FUNCTIONS = ("execv", "execve", "execvp", "execvpe")


def _words(args) -> list[str]:
    """A command line as words (a string is split as a shell would)."""
    if isinstance(args, str | bytes):
        try:
            return shlex.split(os.fsdecode(args))
        except ValueError:
            return [os.fsdecode(args)]
    if isinstance(args, os.PathLike):
        return [os.fsdecode(args)]
    return [os.fsdecode(word) for word in args]


def slow_program(args) -> str | None:
    """What in the command line ``args`` makes a test slow (``dvc``, ``torchrun``,
    ``python -m dvc``, ...), or None."""
    words = _words(args)
    if not words:
        return None
    program = Path(words[0]).name
    if program in SLOW_PROGRAMS:
        return program
    if program.startswith("python"):
        for index, word in enumerate(words[1:-1], start=1):
            if word == "-m":
                module = words[index + 1]
                return f"python -m {module}" if module in SLOW_MODULES else None
            if not word.startswith("-"):
                return None
    return None


def _not_marked_slow(what: str) -> None:
    pytest.fail(
        f"this test {what} but is not marked slow: mark this test slow "
        "(@pytest.mark.slow, or pytestmark = pytest.mark.slow for the module) so that "
        '`python -m pytest -m "not slow"` stays a quick loop',
        pytrace=True,
    )


def _in_library() -> bool:
    """Whether a function of the headpose package is on the caller's stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").partition(".")[0] == "headpose":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Fail on dvc, torchrun, ONNX export and library training while the block runs."""
    popen_init = subprocess.Popen.__init__
    onnx_export = torch.onnx.export
    execs = {name: getattr(os, name) for name in EXEC_FUNCTIONS}

    def guarded_popen_init(self, args, *rest, **options):
        program = slow_program(args)
        if program:
            _not_marked_slow(f"runs {program} ({shlex.join(_words(args))[:120]})")
        popen_init(self, args, *rest, **options)

    def guarded_exec(name):
        def exec_(path, argv, *rest):
            program = slow_program(argv) or slow_program([path])
            if program:
                _not_marked_slow(f"replaces itself by {program} (os.{name})")
            return execs[name](path, argv, *rest)

        return exec_

    def guarded_export(*args, **kwargs):
        _not_marked_slow("exports a model to ONNX (torch.onnx.export)")

    def step_pre_hook(optimizer, args, kwargs):
        if _in_library():
            _not_marked_slow(f"trains a model ({type(optimizer).__name__}.step in headpose)")

    subprocess.Popen.__init__ = guarded_popen_init
    torch.onnx.export = guarded_export
    for name in EXEC_FUNCTIONS:
        setattr(os, name, guarded_exec(name))
    handle = register_optimizer_step_pre_hook(step_pre_hook)
    try:
        yield
    finally:
        handle.remove()
        for name, function in execs.items():
            setattr(os, name, function)
        torch.onnx.export = onnx_export
        subprocess.Popen.__init__ = popen_init
