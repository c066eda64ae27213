"""Where crop stores live (:func:`store_root`) and the key that names a store by its content
(:func:`store_key`).

**One folder per content.** A store is the folder ``<root>/<key>/``. The key is a SHA-256 over
everything that determines the content: the list (its entries, in order), each sample's content
digest (its format's: the bytes of a ``.jpg`` and ``.mat``, a BIWI frame's files), the spec
(image size, side, crop protocol's name, purpose), the source of the modules that compute a crop
(:func:`code_files`: :data:`CODE_FILES`, every module of the store package, and the modules
defining the crop protocol and the dataset formats of the list's samples, derived from their
classes, never listed by hand), OpenCV's and Pillow's versions and
:data:`~headpose.crops.store.spec.FORMAT_VERSION`. Any change gives a new key and a new store,
so nothing stale is ever read; runs that change none of them (another ``bin_width``, another
architecture, a queued experiment in its temporary copy) open the same folder. Old stores are
never deleted automatically: ``rm -r .cache/crops``.

**Root.** ``$HEADPOSE_CROP_STORE`` when set, else ``.cache/crops`` in the DVC workspace (git- and
dvc-ignored). A queued ``dvc exp run`` runs in a copy under ``<workspace>/.dvc/tmp/exps/``;
:func:`store_root` resolves the default against the workspace holding that copy, so all queued
experiments share one store.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import cv2
import PIL

from headpose.crops.protocols import CropProtocol
from headpose.crops.store.spec import FORMAT_VERSION, StoreSpec
from headpose.datasets.registry import DatasetFormat, Sample
from headpose.io.parallel import map_with_progress

STORE_ENV = "HEADPOSE_CROP_STORE"
DEFAULT_ROOT = Path(".cache") / "crops"  # inside the DVC workspace
PACKAGE_DIR = Path(__file__).resolve().parents[2]
# The modules whose code decides a stored crop and its labels besides the store package's own
# (:data:`STORE_PACKAGE`, every module of it) and those that define the store's crop protocol and
# its samples' dataset formats (:func:`code_files`): any edit gives new stores.
CODE_FILES = (
    "crops/crop.py",
    "crops/framing.py",
    "crops/protocols/stored_box.py",
    "datasets/labels.py",
    "io/images.py",
    "geometry.py",
)
STORE_PACKAGE = "crops/store"


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
    """The source files whose code decides a store's crops: :data:`CODE_FILES`, the modules of
    the store package (:data:`STORE_PACKAGE`) and the modules defining ``protocol``'s class and
    the dataset ``formats`` of its samples (with their base classes: the registries, a format's
    parent format), derived from the classes themselves."""
    files = [PACKAGE_DIR / name for name in CODE_FILES]
    files += sorted((PACKAGE_DIR / STORE_PACKAGE).glob("*.py"))
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
