"""Reading text files: the one reader of every file the project reads as text.

**The rule.** A text file (``params.yaml``, a sample list or ``angles.tsv``, a BIWI pose or
calibration file, a ``--boxes`` file, a model card, a crop store's metadata, ...) is read by
:func:`read_text_file` and nothing else: it must be a regular file (links followed; a folder,
FIFO, socket or device such as ``/dev/zero`` is refused before it is opened for reading, and the
file is opened non-blocking so a FIFO swapped in cannot hang the process), of at most the
``max_bytes`` its reader allows (at most ``max_bytes + 1`` bytes are ever read, so a huge file
costs no more memory or time than the bound), and decode as ``encoding`` (UTF-8 unless said
otherwise). Anything else is one :class:`~headpose.errors.HeadposeError` line naming the file,
what it was read as, and what was expected: never a traceback, a hang or an unbounded
allocation. Each reader names its bound next to its call (``..._MAX_BYTES``).
"""

from __future__ import annotations

import os
import stat

from headpose.errors import HeadposeError

MIB = 1024 * 1024
_CHUNK_BYTES = MIB


def _size_text(size: int) -> str:
    if size >= MIB:
        return f"{size // MIB} MiB" if size % MIB == 0 else f"{size / MIB:.1f} MiB"
    return f"{size:,} bytes"


def _not_regular(mode: int) -> str | None:
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


def read_text_file(
    path: str | os.PathLike,
    max_bytes: int,
    what: str,
    encoding: str = "utf-8",
    missing_hint: str = "",
) -> str:
    """The text of the regular file ``path``, at most ``max_bytes`` bytes, decoded as
    ``encoding``; a HeadposeError ``<what> <path> ...`` (``missing_hint`` appended when it does
    not exist) when it is missing, unreadable, no regular file, larger, or not that encoding
    (naming the byte offset)."""
    name = f"{what} {os.fspath(path)}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise HeadposeError(f"{name} does not exist{missing_hint}") from None
    except OSError as error:
        raise HeadposeError(f"{name} cannot be read ({error.strerror or error})") from None
    problem = _not_regular(mode)
    if problem:
        raise HeadposeError(f"{name} {problem}; expected a text file")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise HeadposeError(f"{name} cannot be read ({error.strerror or error})") from None
    try:
        status = os.fstat(descriptor)
        problem = _not_regular(status.st_mode)  # replaced between the stat and the open
        if problem:
            raise HeadposeError(f"{name} {problem}; expected a text file")
        if status.st_size > max_bytes:
            raise HeadposeError(
                f"{name} is {_size_text(status.st_size)}; expected at most {_size_text(max_bytes)}"
            )
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            chunk = os.read(descriptor, min(_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as error:
        raise HeadposeError(f"{name} cannot be read ({error.strerror or error})") from None
    finally:
        os.close(descriptor)
    if total > max_bytes:  # grew while read, or a file whose size the system does not report
        raise HeadposeError(f"{name} is larger than {_size_text(max_bytes)}; expected at most that")
    data = b"".join(chunks)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise HeadposeError(
            f"{name}: byte 0x{data[error.start]:02x} at offset {error.start} is not "
            f"{encoding.upper()}; expected {encoding.upper()} text"
        ) from None
