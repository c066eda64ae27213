"""Output files: written atomically, so an interrupted stage never leaves half-written results.

Every output goes to a temporary sibling first and is renamed into place only once complete
(``os.replace`` is atomic on one filesystem). Unwritable destinations raise a HeadposeError that
names the path.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headpose.errors import HeadposeError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HeadposeError(
            f"cannot create output folder {path.parent}: {error.strerror}"
        ) from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path`` atomically.

    The temporary name keeps the suffix (``.json``, ``.pt``, ...) so writers that look at the
    extension behave the same. On any exception the temporary file is removed.
    """
    target = Path(path)
    _make_parent(target)
    try:
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
        )
    except OSError as error:
        raise HeadposeError(f"cannot write {target}: {error.strerror}") from None
    os.close(handle)
    temp = Path(temp_name)
    os.chmod(temp, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs get normal modes
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``.

    An existing ``path`` is removed only after the new content is complete.
    """
    target = Path(path)
    _make_parent(target)
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise HeadposeError(f"cannot write {target}: {error.strerror}") from None
    try:
        yield temp
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(temp, target)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write pretty-printed JSON atomically (the format of every metrics file)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV file (a header line, then one line per row) atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, text.getvalue())


def file_size_mb(path: str | os.PathLike) -> float:
    """Size of a file in MiB, rounded to 2 decimals (as every report gives it)."""
    return round(os.path.getsize(path) / 2**20, 2)
