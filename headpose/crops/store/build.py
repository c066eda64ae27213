"""Building a crop store (:func:`build_store`): every sample of a list decoded once into the
store's files.

Building streams: worker processes decode the samples in order
(:func:`headpose.io.parallel.imap_with_progress`, with a progress bar) and each crop is written
straight to the images file, reserved on disk beforehand, with ordinary writes (a full disk is
one line, never a SIGBUS), so the dataset is never held in memory. It happens in a temporary
sibling folder renamed to ``<key>`` only when complete (:func:`headpose.io.files.atomic_directory`);
an interrupted build leaves a ``.<key>.*.tmp`` folder that no reader trusts and that the next
build of that key deletes. A lock file serialises builders of one key, so parallel experiments
and DDP ranks build it once and the others wait and reuse it. An existing store is checked first
(:func:`headpose.crops.store.read.verify_store`) and rebuilt when damaged.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from headpose.crops.crop import shrunk_cut
from headpose.crops.framing import context_bounds
from headpose.crops.protocols.stored_box import sample_protocol
from headpose.crops.store.key import STORE_ENV
from headpose.crops.store.read import (
    VERIFY_ENV,
    StoreDamaged,
    file_checksums,
    rows_digest,
    verify_store,
)
from headpose.crops.store.spec import (
    ANGLES_FILE,
    BOXES_FILE,
    META_FILE,
    REGIONS_FILE,
    ROW_DIGESTS_FILE,
    StoreSpec,
    image_file_names,
    spec_meta,
)
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError
from headpose.io.files import atomic_directory, write_json
from headpose.io.parallel import imap_with_progress


def prepare_sample(
    task: tuple[Sample, StoreSpec],
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Decode one sample ``(sample, spec)`` into (stored images: the crop or training region,
    then its context when the spec has one; face box, region, angles), under the sample's crop
    (:func:`~headpose.crops.protocols.stored_box.sample_protocol`: the spec's protocol, or the
    stored box of a dataset that stores its final crop, for training as for evaluation)."""
    sample, spec = task
    image, labels = sample.read()  # validated by its format: bounded image and box
    protocol = sample_protocol(spec.protocol, sample)
    box = protocol.face_box(labels)
    if spec.purpose == "train":
        region = protocol.training_region(box)
        stored = [protocol.training_region_pixels(image, region, spec.side)]
        if spec.has_context:
            bounds = context_bounds(region, spec.context_extent)
            stored.append(shrunk_cut(image, bounds, spec.side))
    else:
        region = protocol.evaluation_bounds(box)
        stored = [protocol.evaluation_crop(image, box, spec.side)]
    angles = np.asarray(labels.angles_deg, dtype=np.float32)
    return stored, np.asarray(box, dtype=np.float64), np.asarray(region, dtype=np.float64), angles


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (released by the OS if this process dies)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"crop store: waiting for another process building {path.with_suffix('')}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def size_text(count: int) -> str:
    """A byte count for people: ``812 KiB``, ``3.4 MiB``, ``1.20 GiB`` (never ``0.0 GiB``)."""
    for unit, scale, digits in (("GiB", 2**30, 2), ("MiB", 2**20, 1), ("KiB", 2**10, 0)):
        if count >= scale:
            return f"{count / scale:.{digits}f} {unit}"
    return f"{count} bytes"


def _no_space(root: Path, needed_bytes: int, free_bytes: int) -> HeadposeError:
    return HeadposeError(
        f"crop store {root}: needs {size_text(needed_bytes)}, only {size_text(free_bytes)} "
        f"free; free space or set {STORE_ENV} to a folder on a larger disk"
    )


def _check_free_space(root: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(root).free
    if free < needed_bytes:
        raise _no_space(root, needed_bytes, free)


def _images_header(count: int, side: int) -> bytes:
    """The ``.npy`` header of ``(count, side, side, 3)`` uint8 images (format version 1.0)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (count, side, side, 3)}
    )
    return header.getvalue()


def _reserve(handle, size: int, folder: Path) -> None:
    """Reserve ``size`` bytes for an open file on disk (a full disk is one line now)."""
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise _no_space(folder.parent, size, shutil.disk_usage(folder).free) from None
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it
            raise


def _write_store(folder: Path, samples: list[Sample], spec: StoreSpec, workers: int) -> None:
    """Decode ``samples`` into the files of a store in ``folder`` (streamed, in parallel).

    Each image file is reserved on disk first (``posix_fallocate``: a full disk is an OSError
    now, not later) and filled with ordinary writes, never through a memory map, whose write to
    a full disk kills the process with SIGBUS and leaves its temporary folder behind.
    """
    side = spec.side
    folder.chmod(0o755)  # readable by every user of a shared store (mkdtemp makes 0700)
    header = _images_header(len(samples), side)
    face_boxes = np.empty((len(samples), 4), dtype=np.float64)
    regions = np.empty((len(samples), 4), dtype=np.float64)
    angles = np.empty((len(samples), 3), dtype=np.float32)
    tasks = [(sample, spec) for sample in samples]
    names = image_file_names(spec)
    row_digests = np.empty((len(samples), len(names), 32), dtype=np.uint8)
    size = len(header) + len(samples) * side * side * 3
    with ExitStack() as stack:
        handles = [stack.enter_context(open(folder / name, "wb")) for name in names]
        for handle in handles:
            _reserve(handle, size, folder)
            handle.write(header)
        digests = [hashlib.sha256(header) for _ in names]  # of the whole files, as written
        results = imap_with_progress(prepare_sample, tasks, workers, "build crop store")
        for index, (stored, face_box, region, sample_angles) in enumerate(results):
            for file, (handle, digest, image) in enumerate(
                zip(handles, digests, stored, strict=True)
            ):
                row = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
                handle.write(row)
                digest.update(row)
                row_digests[index, file] = np.frombuffer(hashlib.sha256(row).digest(), np.uint8)
            face_boxes[index], regions[index], angles[index] = face_box, region, sample_angles
    np.save(folder / BOXES_FILE, face_boxes)
    np.save(folder / REGIONS_FILE, regions)
    np.save(folder / ANGLES_FILE, angles)
    np.save(folder / ROW_DIGESTS_FILE, row_digests)
    files = {
        name: {
            "bytes": size,
            "sha256": digest.hexdigest(),
            "rows_sha256": rows_digest(np.load(folder / name, mmap_mode="r")),
        }
        for name, digest in zip(names, digests, strict=True)
    }
    for name in (BOXES_FILE, REGIONS_FILE, ANGLES_FILE, ROW_DIGESTS_FILE):
        files[name] = file_checksums(folder / name)
    meta = {**spec_meta(spec, len(samples)), "files": files}
    write_json(folder / META_FILE, meta)


def _discard(folder: Path) -> None:
    """Move a damaged store aside (readers that mapped it keep their pages) and delete it."""
    aside = folder.with_name(f".{folder.name}.damaged{os.getpid()}.tmp")
    os.replace(folder, aside)
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:  # a file where the store's folder should be
        aside.unlink()


def build_store(
    samples: list[Sample], spec: StoreSpec, key: str, root: Path, workers: int = 0
) -> tuple[Path, float]:
    """Make sure the store ``root/key`` exists and passes :func:`verify_store`; return its
    folder and the seconds spent building it here (0 when it already existed or another process
    built it meanwhile). A damaged store is named in one line and rebuilt."""
    folder = root / key
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HeadposeError(f"cannot create crop store folder {root}: {error.strerror}") from None
    with _build_lock(root / f"{key}.lock"):
        if folder.exists():
            try:
                verify_store(folder, len(samples), spec, full=os.environ.get(VERIFY_ENV) == "full")
                return folder, 0.0
            except StoreDamaged as damage:
                print(f"crop store {folder} fails its check ({damage}); rebuilding it")
                _discard(folder)
        for leftover in root.glob(f".{key}.*.tmp"):  # an interrupted build: never trusted
            shutil.rmtree(leftover, ignore_errors=True)
        _check_free_space(
            root, len(samples) * spec.side * spec.side * 3 * len(image_file_names(spec))
        )
        started = time.perf_counter()
        try:
            with atomic_directory(folder) as temp:
                _write_store(temp, samples, spec, workers)
        except OSError as error:
            raise HeadposeError(f"cannot write the crop store {folder}: {error}") from None
        return folder, time.perf_counter() - started
