"""Reading a built crop store: its check before each use (:func:`verify_store`) and opening it
(:func:`open_store`).

**Checked before each use.** A store damaged after its build (zeroed pixels or angles, a file of
another shape, truncated, or with an overwritten header) is not trusted: :func:`verify_store`
compares the meta, every file's size, the arrays' shapes and types and the index files' SHA-256.
An evaluation store (small) is then hashed whole, every time. A training store (up to tens of
GB) gets the quick check: the SHA-256 of :data:`CHECKED_ROWS` evenly spread image rows and of
:data:`RANDOM_ROWS` rows drawn afresh on every open, each against the digest its build recorded
for that row (``row_digests.npy``). Damage to a share ``q`` of the rows is therefore caught with
probability at least ``1 - (1 - q) ** RANDOM_ROWS`` on each open (92 % for 1 % of the rows, 99.8 %
for 2.5 %), and a damaged row escapes only as long as no open draws it;
``$HEADPOSE_CROP_STORE_VERIFY=full`` hashes every byte. A store that fails gets one line saying
what differs and is rebuilt (:func:`headpose.crops.store.build.build_store`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from headpose.crops.store.spec import (
    ANGLES_FILE,
    BOXES_FILE,
    CONTEXTS_FILE,
    IMAGES_FILE,
    META_FILE,
    REGIONS_FILE,
    ROW_DIGESTS_FILE,
    PreparedCrops,
    StoreSpec,
    image_file_names,
    spec_meta,
)
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError
from headpose.io.text import MIB, read_text_file

VERIFY_ENV = "HEADPOSE_CROP_STORE_VERIFY"  # "full": hash every byte of a store before reuse
CHECKED_ROWS = 64  # evenly spread image rows hashed by a store's quick check (see verify_store)
RANDOM_ROWS = 256  # and image rows drawn afresh on each quick check


def sampled_rows(count: int) -> list[int]:
    """The rows of ``images.npy`` whose bytes the store's quick check hashes: up to
    :data:`CHECKED_ROWS` evenly spread ones, the first and the last among them."""
    if count <= CHECKED_ROWS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (CHECKED_ROWS - 1)) for i in range(CHECKED_ROWS)})


def rows_digest(images: np.ndarray) -> str:
    digest = hashlib.sha256()
    for row in sampled_rows(len(images)):
        digest.update(np.ascontiguousarray(images[row]).tobytes())
    return digest.hexdigest()


def file_checksums(path: Path) -> dict:
    """What :func:`verify_store` compares for one file: its size and SHA-256."""
    with open(path, "rb") as handle:
        return {
            "bytes": os.fstat(handle.fileno()).st_size,
            "sha256": hashlib.file_digest(handle, "sha256").hexdigest(),
        }


# Each file of a store: (its shape for (count, side), its dtype); and the keys of its meta.
FILE_SHAPES = {
    IMAGES_FILE: (lambda count, side, images: (count, side, side, 3), np.uint8),
    CONTEXTS_FILE: (lambda count, side, images: (count, side, side, 3), np.uint8),
    BOXES_FILE: (lambda count, side, images: (count, 4), np.float64),
    REGIONS_FILE: (lambda count, side, images: (count, 4), np.float64),
    ANGLES_FILE: (lambda count, side, images: (count, 3), np.float32),
    ROW_DIGESTS_FILE: (lambda count, side, images: (count, images, 32), np.uint8),
}
META_MAX_BYTES = MIB  # the build's record: settings and a checksum per file, a few kB
META_KEYS = {
    "format", "count", "side", "image_size", "protocol", "purpose", "context_extent", "files",
}  # fmt: skip


def store_files(spec: StoreSpec) -> tuple[str, ...]:
    """The array files a store of ``spec`` holds."""
    return (*image_file_names(spec), BOXES_FILE, REGIONS_FILE, ANGLES_FILE, ROW_DIGESTS_FILE)


class StoreDamaged(HeadposeError):
    """A store folder whose files do not match what its build recorded."""


def _read_meta(folder: Path, spec: StoreSpec) -> dict:
    try:
        meta = json.loads(read_text_file(folder / META_FILE, META_MAX_BYTES, "crop store file"))
    except (HeadposeError, ValueError, RecursionError) as error:
        raise StoreDamaged(f"{META_FILE} unreadable: {error}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise StoreDamaged(f"{META_FILE} holds no checksums (an older or foreign store)")
    if set(meta) != META_KEYS or set(meta["files"]) != set(store_files(spec)):
        raise StoreDamaged(f"{META_FILE} holds other keys than a build writes")
    return meta


def verify_store(folder: Path, count: int, spec: StoreSpec, full: bool = False) -> None:
    """Raise :class:`StoreDamaged` (saying what differs) unless the store in ``folder`` holds
    ``count`` samples for ``spec`` as its build recorded: meta, each file's size, the arrays'
    shapes and types, the index files' SHA-256 and the quick check of the image rows (the
    module docstring); ``full`` (always for an evaluation store): the SHA-256 of the whole image
    files, a read of all of them."""
    full = full or spec.purpose == "eval"
    meta = _read_meta(folder, spec)
    expected = spec_meta(spec, count)
    side = spec.side
    for key, value in expected.items():
        if meta.get(key) != value:
            raise StoreDamaged(f"{META_FILE} says {key} {meta.get(key)!r}, expected {value!r}")
    image_files = image_file_names(spec)
    for name in store_files(spec):
        shape_of, dtype = FILE_SHAPES[name]
        shape = shape_of(count, side, len(image_files))
        recorded = meta["files"][name]
        keys = {"bytes", "sha256"} | ({"rows_sha256"} if name in image_files else set())
        if not isinstance(recorded, dict) or set(recorded) != keys:
            raise StoreDamaged(f"{META_FILE} records no checksums of {name}")
        path = folder / name
        try:
            size = path.stat().st_size
            array = np.load(path, mmap_mode="r")
        except Exception as error:  # numpy raises many types for a damaged header
            raise StoreDamaged(f"{name} unreadable: {error}") from None
        if size != recorded.get("bytes"):
            raise StoreDamaged(f"{name} is {size} bytes, its build wrote {recorded.get('bytes')}")
        if array.shape != shape or array.dtype != dtype:
            raise StoreDamaged(
                f"{name} holds {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}"
            )
        hashed_whole = full or name not in image_files
        if hashed_whole and file_checksums(path)["sha256"] != recorded.get("sha256"):
            raise StoreDamaged(f"{name}: SHA-256 differs from what its build wrote")
        # the rows digest too under a full check, so that no recorded checksum goes unread
        if name in image_files and rows_digest(array) != recorded.get("rows_sha256"):
            raise StoreDamaged(f"{name}: sampled rows differ from what its build wrote")
    if not full:
        _check_random_rows(folder, image_files, count)


def _check_random_rows(folder: Path, image_files: tuple[str, ...], count: int) -> None:
    """Compare :data:`RANDOM_ROWS` rows drawn afresh (the OS's entropy) with the per-row
    SHA-256 the build recorded (its file was verified just before)."""
    row_digests = np.load(folder / ROW_DIGESTS_FILE)
    rows = np.random.default_rng().choice(count, min(RANDOM_ROWS, count), replace=False)
    for file, name in enumerate(image_files):
        images = np.load(folder / name, mmap_mode="r")
        for row in rows:
            found = hashlib.sha256(np.ascontiguousarray(images[row]).tobytes()).digest()
            if found != row_digests[row, file].tobytes():
                raise StoreDamaged(f"{name}: row {row} differs from what its build wrote")


def open_store(folder: Path, samples: list[Sample], spec: StoreSpec) -> PreparedCrops:
    """The crops of a built (and verified) store, images memory-mapped read-only."""
    images = np.load(folder / IMAGES_FILE, mmap_mode="r")
    face_boxes = np.load(folder / BOXES_FILE)
    regions = np.load(folder / REGIONS_FILE)
    angles = np.load(folder / ANGLES_FILE)
    contexts = np.load(folder / CONTEXTS_FILE, mmap_mode="r") if spec.has_context else None
    if not len(images) == len(face_boxes) == len(regions) == len(angles) == len(samples):
        raise HeadposeError(
            f"crop store {folder} holds {len(images)} samples, expected {len(samples)}: "
            "delete the folder to rebuild it"
        )
    return PreparedCrops(
        list(samples), images, face_boxes, regions, angles, spec, folder.name, contexts
    )


def store_size_bytes(folder: Path) -> int:
    """Bytes on disk of a store's files."""
    return sum(file.stat().st_blocks * 512 for file in folder.iterdir())
