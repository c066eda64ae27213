"""Output files: written atomically, so an interrupted stage never leaves half-written results.

Every output goes to a temporary sibling first and is renamed into place only once complete
(``os.replace`` is atomic on one filesystem); :func:`atomic_outputs` does so for several outputs
together, replacing none unless all were written and all can be replaced. Unwritable
destinations and failed writes (disk full, permission denied, a folder where a file should go)
raise a HeadposeError that names the path and the reason. Files and folders get the normal
modes of the user's umask. :func:`file_problem` says why an input path is no file to read (a
folder or a FIFO is not "missing").

Temporaries are named ``.<name>.<pid>-<random>.tmp...`` after the process writing them. A process
killed with SIGKILL cannot remove its own; the next write of the same output removes every such
sibling whose process is gone (:func:`remove_stale_temporaries`; for file outputs once per folder
and process). :func:`update_folder` moves a
staged set of files into a folder that may hold a previous set (``headpose predict``'s outputs),
with SIGINT and SIGTERM held off during the few renames, so the folder never holds parts of two
sets.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headpose.errors import HeadposeError


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no regular file to read (links followed): ``does not exist``, ``is a
    folder, not a file`` or ``is not a regular file (...)``; None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_mode(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp make 0600/0700; outputs get what the umask gives new files/folders."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


def _is_write_failure(error: OSError, temp: Path) -> bool:
    """Whether an OSError raised while writing ``temp`` (a file, or a folder and what is below
    it) is about that output; an error naming another file (an input) is left alone."""
    return error.filename is None or Path(error.filename).is_relative_to(temp)


@contextmanager
def _write_errors_named(target: Path, temp: Path) -> Iterator[None]:
    """Turn an OSError about the output (``temp`` or ``target``) into the one-line error naming
    ``target``; others propagate."""
    try:
        yield
    except OSError as error:
        if not _is_write_failure(error, temp) and error.filename != str(target):
            raise
        raise write_error(target, error) from None


def write_error(target: Path, error: OSError) -> HeadposeError:
    """The one-line error for a failed write of ``target``: the path and why."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = f"{reason} (free some space and run again)"
    return HeadposeError(f"cannot write {target}: {reason}")


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
    if target.is_dir():
        raise HeadposeError(f"cannot write {target}: it is a folder; give a file name")
    _make_parent(target)
    temp = _temporary_file(target)
    try:
        with _write_errors_named(target, temp):
            yield temp
            os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


STALE_TEMPORARY = re.compile(r"\..+\.(\d+)-\w+\.tmp.*")  # .<name>.<pid>-<random>.tmp[suffix]
_SWEPT_FOR_FILES: set[str] = set()  # folders this process swept before writing a file in them


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries ``.<name>.<pid>-<random>.tmp...`` (files or folders) in ``folder``
    left by processes that no longer run (killed with SIGKILL or by the kernel); return what was
    removed. Those of running processes, this one included, are kept."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = STALE_TEMPORARY.fullmatch(entry.name) if entry.name[:1] == "." else None
        if not match or int(match[1]) == os.getpid() or _process_alive(int(match[1])):
            continue
        try:
            _remove(Path(entry.path))
        except OSError:
            continue  # not ours to remove (another user's): the write itself still goes ahead
        removed.append(Path(entry.path))
    return removed


def _temporary_file(target: Path) -> Path:
    """An empty temporary file beside ``target``, with a normal mode. The folder's stale
    temporaries are removed the first time this process writes a file into it (a folder of
    thousands of samples is listed once, not on every write)."""
    folder = os.path.abspath(target.parent)
    if folder not in _SWEPT_FOR_FILES:
        remove_stale_temporaries(target.parent)
        _SWEPT_FOR_FILES.add(folder)
    try:
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.{os.getpid()}-",
            suffix=f".tmp{target.suffix}",
            dir=target.parent,
        )
    except OSError as error:
        raise write_error(target, error) from None
    os.close(handle)
    _normal_mode(Path(temp_name), directory=False)
    return Path(temp_name)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``.

    An existing ``path`` is removed only after the new content is complete.
    """
    target = Path(path)
    _make_parent(target)
    temp = _temporary_folder(target)
    try:
        with _write_errors_named(target, temp):
            yield temp
            _check_replaceable(target)
            _remove(target)
            os.replace(temp, target)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _temporary_folder(target: Path) -> Path:
    """An empty temporary folder beside ``target``, with a normal mode (the folder's stale
    temporaries removed first: folder outputs are few)."""
    remove_stale_temporaries(target.parent)
    try:
        temp = Path(
            tempfile.mkdtemp(
                prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent
            )
        )
    except OSError as error:
        raise write_error(target, error) from None
    _normal_mode(temp, directory=True)
    return temp


def _check_replaceable(target: Path) -> None:
    """Raise unless ``target`` (absent, a file or a folder tree) can be removed and replaced."""
    folders = [target.parent]
    if target.is_dir() and not target.is_symlink():
        folders += [target] + [
            Path(root) / name for root, names, _ in os.walk(target) for name in names
        ]
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise HeadposeError(f"cannot replace {target}: {folder} is not writable")


def _remove(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


@contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield one temporary path per output (a file or a folder the caller creates there); once
    the block has written them all, check every destination can be replaced, then move each into
    place. A failure before that point replaces nothing."""
    targets = [Path(path) for path in paths]
    for target in targets:
        _make_parent(target)
    folders = [_temporary_folder(target) for target in targets]
    try:
        temps = [folder / target.name for folder, target in zip(folders, targets, strict=True)]
        yield temps
        for target in targets:
            _check_replaceable(target)
        for temp, target in zip(temps, targets, strict=True):
            if not temp.exists():
                raise HeadposeError(f"{target} was not written")
        for temp, target in zip(temps, targets, strict=True):
            _remove(target)
            os.replace(temp, target)
    except OSError as error:
        written = [t for f, t in zip(folders, targets, strict=True) if _is_write_failure(error, f)]
        if error.filename is not None and not written:
            raise
        raise write_error(written[0] if written else targets[0], error) from None
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def interruptions_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off for the block (delivered when it ends); a no-op outside the
    main thread or where signals cannot be masked."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def staging_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden folder inside ``folder`` (created if needed) to stage a set of
    outputs in; it is removed when the block ends, whatever it still holds. Staging folders of
    killed runs are removed first."""
    target = Path(folder) / "staging"
    _make_parent(target)
    temp = _temporary_folder(target)
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def update_folder(
    folder: Path, staged: Path, *, previous: Iterable[str] = (), complete_marker: str
) -> None:
    """Move every file of ``staged`` into ``folder``, replacing a previous set of outputs.

    ``complete_marker`` (a file of the new set) says a set is complete: the old one is removed
    first, then the files named in ``previous`` (the old set's files) that the new set does not
    replace, then the new files are moved in, the marker last. Interruptions are held off for
    these renames, so wherever SIGINT or SIGTERM stops a run the folder holds one set, whole.
    """
    new_names = sorted(path.name for path in staged.iterdir())
    if complete_marker not in new_names:
        raise HeadposeError(f"{folder / complete_marker} was not written")
    with interruptions_held():
        try:
            (folder / complete_marker).unlink(missing_ok=True)
            for name in set(previous) - set(new_names):
                old = folder / name
                if Path(name).name == name and (old.is_file() or old.is_symlink()):
                    old.unlink()  # a file of the old set only: never a folder, never elsewhere
            for name in sorted(new_names, key=lambda name: name == complete_marker):
                os.replace(staged / name, folder / name)
        except OSError as error:
            raise write_error(folder, error) from None


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write pretty-printed JSON atomically (the format of every metrics file). A NaN or an
    infinity is refused (JSON has none: ``NaN`` would make the file unreadable to DVC and to
    every JSON reader), naming the file."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise HeadposeError(f"{path}: refusing to write a value that is not finite") from None
    write_text(path, text + "\n")


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
