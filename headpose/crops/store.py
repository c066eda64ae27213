"""The crop store: every sample of a list decoded once into an on-disk, memory-mapped array.

Decoding a 450x450 JPEG and a .mat file costs far more than a training step on a small crop, so each
sample is decoded **once** into a small uint8 image (:class:`StoreSpec` says which): for training,
the region every random crop of its face lies within
(:meth:`~headpose.crops.protocols.CropProtocol.training_region`, ``cache_side(image_size)`` pixels
square), and with framing augmentation a second image of the same size, ``contexts.npy``, of
the region's surroundings that re-framed crops reach (:mod:`headpose.crops.framing`); for
evaluation, the final crop of the crop protocol, cut from the full image
(:meth:`~headpose.crops.protocols.CropProtocol.evaluation_crop`). Training, validation and
evaluation all read these prepared crops (:class:`PreparedCrops`) through
:func:`prepare_crops`, which opens the store of a list, building it first when it does not
exist yet.

**One folder per content.** A store is the folder ``<root>/<key>/``: ``images.npy`` (``(N, S, S,
3)`` uint8, read with ``numpy.load(mmap_mode="r")``), ``face_boxes.npy`` and ``regions.npy``
(float64, full-image pixels), ``angles_deg.npy`` (float32) and ``meta.json`` (count, spec, and each
file's size and SHA-256, plus that of sampled image rows). The key (:func:`store_key`) is a SHA-256
over everything that determines the content: the list (its entries, in order), each sample's
content digest (its format's: the bytes of a ``.jpg`` and ``.mat``, a BIWI frame's files), the
spec (image size, side, crop protocol's name, purpose), the source of the modules that compute a
crop (:func:`code_files`: :data:`CODE_FILES`, and the modules defining the crop protocol and the
dataset formats of the list's samples, derived from their classes, never listed by hand),
OpenCV's and Pillow's versions and :data:`FORMAT_VERSION`. Any change gives a new key and a new
store, so nothing stale is ever read; runs that change none of them (another ``bin_width``, another
architecture, a queued experiment in its temporary copy) open the same folder. Old stores are never
deleted automatically: ``rm -r .cache/crops``.

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
what differs and is rebuilt.

**Root.** ``$HEADPOSE_CROP_STORE`` when set, else ``.cache/crops`` in the DVC workspace (git- and
dvc-ignored). A queued ``dvc exp run`` runs in a copy under ``<workspace>/.dvc/tmp/exps/``;
:func:`store_root` resolves the default against the workspace holding that copy, so all queued
experiments share one store.

**Building** (:func:`build_store`) streams: worker processes decode the samples in order
(:func:`headpose.io.parallel.imap_with_progress`, with a progress bar) and each crop is written
straight to the images file, reserved on disk beforehand, with ordinary writes (a full disk is
one line, never a SIGBUS), so the dataset is never held in memory. It happens in a temporary
sibling folder renamed to ``<key>`` only when complete (:func:`headpose.io.files.atomic_directory`);
an interrupted build leaves a ``.<key>.*.tmp`` folder that no reader trusts and that the next
build of that key deletes. A lock file serialises builders of one key, so parallel experiments
and DDP ranks build it once and the others wait and reuse it.

**Sharing.** The images are memory-mapped read-only: loader workers, DDP ranks and parallel
experiments on one machine share one copy through the page cache, and each process's private
memory does not grow with the dataset. :class:`PreparedCrops` pickles a memory-mapped array as
its file name, so worker processes map the file instead of receiving a copy.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL

from headpose.crops.crop import cache_side, shrunk_cut
from headpose.crops.framing import context_bounds
from headpose.crops.protocols import CropProtocol
from headpose.crops.protocols.stored_box import sample_protocol
from headpose.datasets.registry import DatasetFormat, Sample
from headpose.errors import HeadposeError
from headpose.io.files import atomic_directory, write_json
from headpose.io.parallel import imap_with_progress, map_with_progress
from headpose.io.text import MIB, read_text_file

STORE_ENV = "HEADPOSE_CROP_STORE"
VERIFY_ENV = "HEADPOSE_CROP_STORE_VERIFY"  # "full": hash every byte of a store before reuse
CHECKED_ROWS = 64  # evenly spread image rows hashed by a store's quick check (see verify_store)
RANDOM_ROWS = 256  # and image rows drawn afresh on each quick check
DEFAULT_ROOT = Path(".cache") / "crops"  # inside the DVC workspace
FORMAT_VERSION = 4  # the files of a store; bump when they change
PURPOSES = ("train", "eval")  # cached regions for random training crops, or final evaluation crops
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The modules whose code decides a stored crop and its labels besides those that define the
# store's crop protocol and its samples' dataset formats (:func:`code_files`): any edit gives
# new stores.
CODE_FILES = (
    "crops/crop.py",
    "crops/framing.py",
    "crops/protocols/stored_box.py",
    "crops/store.py",
    "datasets/labels.py",
    "io/images.py",
    "geometry.py",
)
IMAGES_FILE, CONTEXTS_FILE, BOXES_FILE, REGIONS_FILE, ANGLES_FILE, META_FILE = (
    "images.npy",
    "contexts.npy",
    "face_boxes.npy",
    "regions.npy",
    "angles_deg.npy",
    "meta.json",
)
ROW_DIGESTS_FILE = "row_digests.npy"  # (count, image files, 32) uint8: each row's SHA-256


@dataclass(frozen=True)
class StoreSpec:
    """What a store holds: crops for a model input of ``image_size`` under crop ``protocol``,
    for ``purpose`` "train" (each face's training region at :func:`cache_side` pixels, cut into
    random crops per item) or "eval" (the final evaluation crops, ``image_size`` pixels).
    The protocol's name goes into the store's key and meta."""

    image_size: int
    protocol: CropProtocol
    purpose: str
    # "train" only: how many times larger than each training region (about its centre) a
    # context image of the same side is stored for re-framed crops (headpose.crops.framing);
    # 0 stores none
    context_extent: float = 0.0

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise HeadposeError(f"crop store purpose must be one of {PURPOSES}, got {self.purpose}")
        if self.context_extent and (self.purpose != "train" or self.context_extent <= 1):
            raise HeadposeError(
                f"a context extent ({self.context_extent}) needs a train store and a value > 1"
            )

    @property
    def has_context(self) -> bool:
        """Whether each sample also has a context image (re-framed training crops)."""
        return self.context_extent > 0

    @property
    def side(self) -> int:
        """Side in pixels of the stored images."""
        return cache_side(self.image_size) if self.purpose == "train" else self.image_size


@dataclass
class PreparedCrops:
    """Decoded samples: square uint8 images (training regions or final evaluation crops, as
    ``spec.purpose`` says), with each face's box and region in full-image pixels, and labels.

    ``images`` is memory-mapped when it comes from a store. ``face_boxes`` are the tight face boxes
    of each sample's crop (:func:`~headpose.crops.protocols.stored_box.sample_protocol`:
    ``spec.protocol``'s, or the stored box); ``regions`` the full-image pixels each image was cut
    from (left, top, right, bottom): a training region, resized to a square, or the evaluation box
    the final crop was scaled and cropped from. ``contexts`` (``spec.has_context`` only, else None):
    each training region's surroundings, the pixels :func:`headpose.crops.framing.context_bounds`
    names, resized to the same square.
    """

    samples: list[Sample]
    images: np.ndarray  # (N, S, S, 3) uint8
    face_boxes: np.ndarray  # (N, 4) float64: x_min, y_min, x_max, y_max
    regions: np.ndarray  # (N, 4) float64: whole pixels
    angles_deg: np.ndarray  # (N, 3) float32: yaw, pitch, roll
    spec: StoreSpec
    key: str = ""  # the store key (contents of the samples and the crop code); "" if none
    contexts: np.ndarray | None = None  # (N, S, S, 3) uint8, spec.has_context only

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def entries(self) -> list[str]:
        """The samples' list entries, in order (item ``i`` is ``entries[i]``)."""
        return [sample.entry for sample in self.samples]

    def __getstate__(self) -> dict:
        """Memory-mapped ``images`` and ``contexts`` travel as their file names (a worker
        process maps the files itself), never as copies of their bytes."""
        state = dict(self.__dict__)
        for name in ("images", "contexts"):
            if isinstance(state[name], np.memmap):
                state[name] = Path(state[name].filename)
        return state

    def __setstate__(self, state: dict) -> None:
        for name in ("images", "contexts"):
            if isinstance(state.get(name), Path):
                state[name] = np.load(state[name], mmap_mode="r")
        self.__dict__.update(state)


# --- Where stores live, and their key -----------------------------------------------------------


def workspace_root(folder: Path) -> Path:
    """The DVC workspace ``folder`` belongs to: for a queued experiment's temporary copy
    (``<workspace>/.dvc/tmp/exps/...``) the workspace that holds the copy, else the nearest
    folder from ``folder`` up that holds a ``.dvc`` folder, else ``folder`` itself."""
    folder = folder.resolve()
    parts = folder.parts
    for index in range(len(parts) - 2):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    for candidate in (folder, *folder.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    return folder


def store_root() -> Path:
    """The folder holding every store: ``$HEADPOSE_CROP_STORE``, else the workspace's
    ``.cache/crops`` (see :func:`workspace_root`)."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return workspace_root(Path.cwd()) / DEFAULT_ROOT


def _defining_modules(classes: list[type]) -> list[str]:
    """The modules that define ``classes`` and the classes they derive from (the standard
    library's ``abc`` and ``builtins`` left out), by name, sorted."""
    return sorted(
        {
            base.__module__
            for cls in classes
            for base in cls.__mro__
            if base.__module__ not in ("builtins", "abc")
        }
    )


def code_files(protocol: CropProtocol, formats: list[type[DatasetFormat]]) -> list[Path]:
    """The source files whose code decides a store's crops: :data:`CODE_FILES` and the modules
    defining ``protocol``'s class and the dataset ``formats`` of its samples (with their base
    classes: the registries, a format's parent format), derived from the classes themselves."""
    files = [PACKAGE_DIR / name for name in CODE_FILES]
    for module in _defining_modules([type(protocol), *formats]):
        path = Path(sys.modules[module].__file__).resolve()
        if path not in files:
            files.append(path)
    return files


def code_digest(protocol: CropProtocol, formats: list[type[DatasetFormat]]) -> str:
    """SHA-256 of the source of :func:`code_files`, each named by its path inside the package
    (or its module's file name outside it, for a plugin)."""
    digest = hashlib.sha256()
    for path in code_files(protocol, formats):
        name = (
            path.relative_to(PACKAGE_DIR).as_posix()
            if path.is_relative_to(PACKAGE_DIR)
            else path.name
        )
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def store_key(samples: list[Sample], spec: StoreSpec, workers: int = 0) -> str:
    """The content key of the store of ``samples`` for ``spec`` (hashes every sample's files in
    ``workers`` processes; a missing one raises a HeadposeError naming it)."""
    formats = sorted({sample.format for sample in samples}, key=lambda f: f.name)
    header = {
        "format": FORMAT_VERSION,
        "image_size": spec.image_size,
        "side": spec.side,
        "protocol": spec.protocol.name,
        "purpose": spec.purpose,
        "context_extent": spec.context_extent,
        "code": code_digest(spec.protocol, formats),
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "count": len(samples),
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    contents = map_with_progress(Sample.digest, samples, workers, "hash samples")
    for sample, content in zip(samples, contents, strict=True):
        digest.update(f"{sample.entry}\0{content}\n".encode())
    return digest.hexdigest()[:32]


# --- Building -----------------------------------------------------------------------------------


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


def _sampled_rows(count: int) -> list[int]:
    """The rows of ``images.npy`` whose bytes the store's quick check hashes: up to
    :data:`CHECKED_ROWS` evenly spread ones, the first and the last among them."""
    if count <= CHECKED_ROWS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (CHECKED_ROWS - 1)) for i in range(CHECKED_ROWS)})


def _rows_digest(images: np.ndarray) -> str:
    digest = hashlib.sha256()
    for row in _sampled_rows(len(images)):
        digest.update(np.ascontiguousarray(images[row]).tobytes())
    return digest.hexdigest()


def _file_checksums(path: Path) -> dict:
    """What :func:`verify_store` compares for one file: its size and SHA-256."""
    with open(path, "rb") as handle:
        return {
            "bytes": os.fstat(handle.fileno()).st_size,
            "sha256": hashlib.file_digest(handle, "sha256").hexdigest(),
        }


def _spec_meta(spec: StoreSpec, count: int) -> dict:
    """The meta.json keys that say what a store holds (checked before it is reused)."""
    return {
        "format": FORMAT_VERSION,
        "count": count,
        "side": spec.side,
        "image_size": spec.image_size,
        "protocol": spec.protocol.name,
        "purpose": spec.purpose,
        "context_extent": spec.context_extent,
    }


def _image_files(spec: StoreSpec) -> tuple[str, ...]:
    """The image files of a store of ``spec``: the crops (or regions), then any contexts."""
    return (IMAGES_FILE, CONTEXTS_FILE) if spec.has_context else (IMAGES_FILE,)


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
    names = _image_files(spec)
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
            "rows_sha256": _rows_digest(np.load(folder / name, mmap_mode="r")),
        }
        for name, digest in zip(names, digests, strict=True)
    }
    for name in (BOXES_FILE, REGIONS_FILE, ANGLES_FILE, ROW_DIGESTS_FILE):
        files[name] = _file_checksums(folder / name)
    meta = {**_spec_meta(spec, len(samples)), "files": files}
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
        _check_free_space(root, len(samples) * spec.side * spec.side * 3 * len(_image_files(spec)))
        started = time.perf_counter()
        try:
            with atomic_directory(folder) as temp:
                _write_store(temp, samples, spec, workers)
        except OSError as error:
            raise HeadposeError(f"cannot write the crop store {folder}: {error}") from None
        return folder, time.perf_counter() - started


# --- Reading ------------------------------------------------------------------------------------


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


def _store_files(spec: StoreSpec) -> tuple[str, ...]:
    """The array files a store of ``spec`` holds."""
    return (*_image_files(spec), BOXES_FILE, REGIONS_FILE, ANGLES_FILE, ROW_DIGESTS_FILE)


class StoreDamaged(HeadposeError):
    """A store folder whose files do not match what its build recorded."""


def _read_meta(folder: Path, spec: StoreSpec) -> dict:
    try:
        meta = json.loads(read_text_file(folder / META_FILE, META_MAX_BYTES, "crop store file"))
    except (HeadposeError, ValueError, RecursionError) as error:
        raise StoreDamaged(f"{META_FILE} unreadable: {error}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise StoreDamaged(f"{META_FILE} holds no checksums (an older or foreign store)")
    if set(meta) != META_KEYS or set(meta["files"]) != set(_store_files(spec)):
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
    expected = _spec_meta(spec, count)
    side = spec.side
    for key, value in expected.items():
        if meta.get(key) != value:
            raise StoreDamaged(f"{META_FILE} says {key} {meta.get(key)!r}, expected {value!r}")
    image_files = _image_files(spec)
    for name in _store_files(spec):
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
        if hashed_whole and _file_checksums(path)["sha256"] != recorded.get("sha256"):
            raise StoreDamaged(f"{name}: SHA-256 differs from what its build wrote")
        # the rows digest too under a full check, so that no recorded checksum goes unread
        if name in image_files and _rows_digest(array) != recorded.get("rows_sha256"):
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


def prepare_crops(
    samples: list[Sample], spec: StoreSpec, workers: int = 0, description: str = "crops"
) -> PreparedCrops:
    """The prepared crops of ``samples`` for ``spec``, from
    their store, built first if needed (``workers`` processes, 0 = one per CPU core).

    A missing or corrupt sample raises a HeadposeError naming its file.
    """
    started = time.perf_counter()
    key = store_key(samples, spec, workers)
    folder, build_s = build_store(samples, spec, key, store_root(), workers)
    crops = open_store(folder, samples, spec)
    action = f"built in {build_s:.1f} s" if build_s else "reused"
    print(
        f"{description}: crop store {folder} {action} ({len(samples)} samples, "
        f"{store_size_bytes(folder) / 2**20:.0f} MiB; key and open "
        f"{time.perf_counter() - started - build_s:.1f} s)"
    )
    return crops
