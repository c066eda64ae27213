"""NumPy ``.npz`` archives read with what each array declares bounded by what the file holds.

``numpy.load`` of an ``.npz`` allocates each array at the shape its ``.npy`` header declares
before reading any data, so 100 bytes declaring ``(1000000, 1000, 1000, 3)`` are a
``MemoryError`` (about 3 TB asked for), not a refused file. :func:`read_npz`, the one reader of
``.npz`` inputs (FSA-Net's BIWI sets, BIWI frame lists), first reads every wanted member's header
(``numpy.lib.format``: shape and dtype, nothing allocated) and refuses, in one line naming the
file and the array, a shape whose bytes exceed the member's data, the member's size recorded in
the archive beyond what its compressed bytes can hold (deflate expands at most
:data:`MAX_DEFLATE_RATIO` times), or a member larger than the archive when stored uncompressed.
Only then does it load the arrays, with pickles refused (``allow_pickle=False``).
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence

import numpy as np
from numpy.lib import format as npy_format

from headpose.errors import HeadposeError

# deflate's largest expansion is about 1032:1; a member claiming more is no honest archive.
MAX_DEFLATE_RATIO = 1100


def _declared_bytes(member, version: tuple[int, int]) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes) an ``.npy`` header declares, read from ``member`` after its magic."""
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(member)
    else:
        raise ValueError(f"npy format version {version[0]}.{version[1]} is not read here")
    return shape, dtype, math.prod(shape) * dtype.itemsize  # Python integers: no overflow


def _check_member(archive: zipfile.ZipFile, name: str, path: str, archive_bytes: int) -> None:
    """Refuse the array ``name`` when its header declares more bytes than its member holds."""
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type == zipfile.ZIP_STORED:
        holds = min(info.file_size, archive_bytes)
    else:
        holds = min(info.file_size, MAX_DEFLATE_RATIO * min(info.compress_size, archive_bytes))
    with archive.open(info) as member:
        version = npy_format.read_magic(member)
        shape, dtype, declared = _declared_bytes(member, version)
        data_bytes = holds - member.tell()
    if declared > data_bytes:
        raise HeadposeError(
            f"{path}: array '{name}' declares {dtype} {shape} ({declared:,} bytes), but the file "
            f"holds at most {max(data_bytes, 0):,} bytes of it"
        )


def read_npz(path: str | os.PathLike, names: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the ``.npz`` archive ``path`` (``what`` it should be, such as "an
    FSA-Net .npz", for the messages), each header checked against the bytes the file holds
    before anything is allocated (module docstring); a missing file or array, a file that is no
    ``.npz``, or an array that declares more than it holds is one HeadposeError line naming the
    file."""
    path = os.fspath(path)
    try:
        archive_bytes = os.path.getsize(path)
        if not zipfile.is_zipfile(path):
            raise HeadposeError(
                f"{path}: not a readable .npz file (expected {what}: a zip archive of arrays)"
            )
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            for name in names:
                if f"{name}.npy" not in members:
                    wanted = " and ".join(f"'{name}'" for name in names)
                    raise HeadposeError(f"{path}: {what} holds {wanted}; this file has no '{name}'")
                _check_member(archive, name, path, archive_bytes)
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in names}
    except FileNotFoundError:
        raise HeadposeError(f"{path}: file not found (expected {what})") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise HeadposeError(f"{path}: not a readable .npz file ({error})") from None
