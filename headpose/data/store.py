"""The crop store: every sample of a list decoded once into an on-disk, memory-mapped array.

Decoding a 450x450 JPEG and a .mat file costs far more than a training step on a small crop, so
each sample is decoded **once** into a small uint8 image (:class:`StoreSpec` says which): for
training, the region every random crop of its face lies within
(:func:`headpose.data.crop.training_region`, ``cache_side(image_size)`` pixels square); for
evaluation, the final crop of the crop protocol, cut from the full image
(:func:`headpose.data.crop.evaluation_crop`). Training, validation and evaluation all read these
prepared crops (:class:`PreparedCrops`) through :func:`prepare_crops`, which opens the store of a
list, building it first when it does not exist yet.

**One folder per content.** A store is the folder ``<root>/<key>/``: ``images.npy``
(``(N, S, S, 3)`` uint8, read with ``numpy.load(mmap_mode="r")``), ``face_boxes.npy`` and
``regions.npy`` (float64, full-image pixels), ``angles_deg.npy`` (float32) and ``meta.json``.
The key (:func:`store_key`) is a SHA-256 over everything that determines the content: the list
(its stems, in order), the bytes of every sample's ``.jpg`` and ``.mat``, the spec (image size,
side, crop protocol, purpose), the source of the modules that compute a crop
(:data:`CODE_FILES`), OpenCV's and Pillow's versions and :data:`FORMAT_VERSION`.
Any change gives a new key and a new store, so nothing stale is ever read; runs that change none
of them (another ``bin_width``, another architecture, a queued experiment in its temporary copy)
open the same folder. Old stores are never deleted automatically: ``rm -r .cache/crops``.

**Root.** ``$HEADPOSE_CROP_STORE`` when set, else ``.cache/crops`` in the DVC workspace (git- and
dvc-ignored). A queued ``dvc exp run`` runs in a copy under ``<workspace>/.dvc/tmp/exps/``;
:func:`store_root` resolves the default against the workspace holding that copy, so all queued
experiments share one store.

**Building** (:func:`build_store`) streams: worker processes decode the samples in order
(:func:`headpose.io.parallel.imap_with_progress`, with a progress bar) and each crop goes straight
into the memory-mapped file, so the dataset is never held in memory. It happens in a temporary
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

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL

from headpose.data.crop import (
    cache_side,
    check_protocol_name,
    cut,
    evaluation_crop,
    face_box,
    resize_square,
    training_region,
)
from headpose.errors import HeadposeError
from headpose.io.files import atomic_directory, write_json
from headpose.io.formats import ANNOTATION_SUFFIX, IMAGE_SUFFIX, read_sample
from headpose.io.parallel import imap_with_progress, map_with_progress

STORE_ENV = "HEADPOSE_CROP_STORE"
DEFAULT_ROOT = Path(".cache") / "crops"  # inside the DVC workspace
FORMAT_VERSION = 2  # the files of a store; bump when they change
PURPOSES = ("train", "eval")  # cached regions for random training crops, or final evaluation crops
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The modules whose code decides a stored crop and its labels: any edit gives new stores.
CODE_FILES = ("data/crop.py", "data/store.py", "io/formats.py", "geometry.py")
IMAGES_FILE, BOXES_FILE, REGIONS_FILE, ANGLES_FILE, META_FILE = (
    "images.npy",
    "face_boxes.npy",
    "regions.npy",
    "angles_deg.npy",
    "meta.json",
)


@dataclass(frozen=True)
class StoreSpec:
    """What a store holds: crops for a model input of ``image_size`` under crop ``protocol``,
    for ``purpose`` "train" (each face's training region at :func:`cache_side` pixels, cut into
    random crops per item) or "eval" (the final evaluation crops, ``image_size`` pixels)."""

    image_size: int
    protocol: str
    purpose: str

    def __post_init__(self) -> None:
        check_protocol_name(self.protocol)
        if self.purpose not in PURPOSES:
            raise HeadposeError(f"crop store purpose must be one of {PURPOSES}, got {self.purpose}")

    @property
    def side(self) -> int:
        """Side in pixels of the stored images."""
        return cache_side(self.image_size) if self.purpose == "train" else self.image_size


@dataclass
class PreparedCrops:
    """Decoded samples: square uint8 images (training regions or final evaluation crops, as
    ``spec.purpose`` says), with each face's box and region in full-image pixels, and labels.

    ``images`` is memory-mapped when it comes from a store. ``face_boxes`` are the tight face
    boxes of ``spec.protocol``; ``regions`` the full-image pixels each image shows (left, top,
    right, bottom; resized to a square for training regions).
    """

    stems: list[str]
    images: np.ndarray  # (N, S, S, 3) uint8
    face_boxes: np.ndarray  # (N, 4) float64: x_min, y_min, x_max, y_max
    regions: np.ndarray  # (N, 4) float64: whole pixels
    angles_deg: np.ndarray  # (N, 3) float32: yaw, pitch, roll
    spec: StoreSpec

    def __len__(self) -> int:
        return len(self.stems)

    def __getstate__(self) -> dict:
        """A memory-mapped ``images`` travels as its file name (a worker process maps the file
        itself), never as a copy of its bytes."""
        state = dict(self.__dict__)
        if isinstance(self.images, np.memmap):
            state["images"] = Path(self.images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], Path):
            state["images"] = np.load(state["images"], mmap_mode="r")
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


def _sha256_of_file(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        raise HeadposeError(f"{path}: sample file not found") from None
    except OSError as error:
        raise HeadposeError(f"{path}: cannot read sample file ({error.strerror})") from None


def _sample_digest(stem: str) -> str:
    """SHA-256 of a sample's image and annotation files."""
    return _sha256_of_file(stem + ANNOTATION_SUFFIX) + _sha256_of_file(stem + IMAGE_SUFFIX)


def code_digest() -> str:
    """SHA-256 of the source of the modules that compute a stored crop (:data:`CODE_FILES`)."""
    digest = hashlib.sha256()
    for name in CODE_FILES:
        digest.update(name.encode() + b"\0" + (PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()


def store_key(stems: list[str], spec: StoreSpec, workers: int = 0) -> str:
    """The content key of the store of ``stems`` for ``spec`` (hashes every sample file in
    ``workers`` processes; a missing one raises a HeadposeError naming it)."""
    header = {
        "format": FORMAT_VERSION,
        "image_size": spec.image_size,
        "side": spec.side,
        "protocol": spec.protocol,
        "purpose": spec.purpose,
        "code": code_digest(),
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "count": len(stems),
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for stem, sample in zip(
        stems, map_with_progress(_sample_digest, stems, workers, "hash samples"), strict=True
    ):
        digest.update(f"{stem}\0{sample}\n".encode())
    return digest.hexdigest()[:32]


# --- Building -----------------------------------------------------------------------------------


def prepare_sample(
    task: tuple[str, StoreSpec],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode one sample ``(stem, spec)`` into (stored image, face box, region, angles)."""
    stem, spec = task
    image, annotation = read_sample(stem)  # validated: bounded image, landmarks and box
    box = face_box(annotation, spec.protocol)
    if spec.purpose == "train":
        region = training_region(box, spec.protocol)
        stored = resize_square(cut(image, region), spec.side)
    else:
        region = (0, 0, image.shape[1], image.shape[0])
        stored = evaluation_crop(image, box, spec.side, spec.protocol)
    angles = np.asarray(annotation.angles_deg, dtype=np.float32)
    return stored, np.asarray(box), np.asarray(region, dtype=np.float64), angles


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


def _check_free_space(root: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(root).free
    if free < needed_bytes:
        raise HeadposeError(
            f"crop store {root}: needs {needed_bytes / 2**30:.1f} GiB, only {free / 2**30:.1f} "
            f"GiB free; free space or set {STORE_ENV} to a folder on a larger disk"
        )


def _write_store(folder: Path, stems: list[str], spec: StoreSpec, workers: int) -> None:
    """Decode ``stems`` into the files of a store in ``folder`` (streamed, in parallel)."""
    side = spec.side
    folder.chmod(0o755)  # readable by every user of a shared store (mkdtemp makes 0700)
    images = np.lib.format.open_memmap(
        folder / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(len(stems), side, side, 3)
    )
    face_boxes = np.empty((len(stems), 4), dtype=np.float64)
    regions = np.empty((len(stems), 4), dtype=np.float64)
    angles = np.empty((len(stems), 3), dtype=np.float32)
    tasks = [(stem, spec) for stem in stems]
    results = imap_with_progress(prepare_sample, tasks, workers, "build crop store")
    for index, sample in enumerate(results):
        images[index], face_boxes[index], regions[index], angles[index] = sample
    images.flush()
    del images
    np.save(folder / BOXES_FILE, face_boxes)
    np.save(folder / REGIONS_FILE, regions)
    np.save(folder / ANGLES_FILE, angles)
    meta = {
        "format": FORMAT_VERSION,
        "count": len(stems),
        "side": side,
        "image_size": spec.image_size,
        "protocol": spec.protocol,
        "purpose": spec.purpose,
    }
    write_json(folder / META_FILE, meta)


def build_store(
    stems: list[str], spec: StoreSpec, key: str, root: Path, workers: int = 0
) -> tuple[Path, float]:
    """Make sure the store ``root/key`` exists; return its folder and the seconds spent building
    it here (0 when it already existed or another process built it meanwhile)."""
    folder = root / key
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HeadposeError(f"cannot create crop store folder {root}: {error.strerror}") from None
    with _build_lock(root / f"{key}.lock"):
        if (folder / META_FILE).is_file():
            return folder, 0.0
        for leftover in root.glob(f".{key}.*.tmp"):  # an interrupted build: never trusted
            shutil.rmtree(leftover, ignore_errors=True)
        _check_free_space(root, len(stems) * spec.side * spec.side * 3)
        started = time.perf_counter()
        try:
            with atomic_directory(folder) as temp:
                _write_store(temp, stems, spec, workers)
        except OSError as error:
            raise HeadposeError(f"cannot write the crop store {folder}: {error}") from None
        return folder, time.perf_counter() - started


# --- Reading ------------------------------------------------------------------------------------


def open_store(folder: Path, stems: list[str], spec: StoreSpec) -> PreparedCrops:
    """The crops of a built store, images memory-mapped read-only."""
    images = np.load(folder / IMAGES_FILE, mmap_mode="r")
    face_boxes = np.load(folder / BOXES_FILE)
    regions = np.load(folder / REGIONS_FILE)
    angles = np.load(folder / ANGLES_FILE)
    if not len(images) == len(face_boxes) == len(regions) == len(angles) == len(stems):
        raise HeadposeError(
            f"crop store {folder} holds {len(images)} samples, expected {len(stems)}: "
            "delete the folder to rebuild it"
        )
    return PreparedCrops(list(stems), images, face_boxes, regions, angles, spec)


def store_size_bytes(folder: Path) -> int:
    """Bytes on disk of a store's files."""
    return sum(file.stat().st_blocks * 512 for file in folder.iterdir())


def prepare_crops(
    stems: list[str], spec: StoreSpec, workers: int = 0, description: str = "crops"
) -> PreparedCrops:
    """The prepared crops of ``stems`` (sample paths without extension) for ``spec``, from
    their store, built first if needed (``workers`` processes, 0 = one per CPU core).

    A missing or corrupt sample raises a HeadposeError naming its file.
    """
    started = time.perf_counter()
    key = store_key(stems, spec, workers)
    folder, build_s = build_store(stems, spec, key, store_root(), workers)
    crops = open_store(folder, stems, spec)
    action = f"built in {build_s:.1f} s" if build_s else "reused"
    print(
        f"{description}: crop store {folder} {action} ({len(stems)} samples, "
        f"{store_size_bytes(folder) / 2**20:.0f} MiB; key and open "
        f"{time.perf_counter() - started - build_s:.1f} s)"
    )
    return crops
