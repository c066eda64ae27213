"""The crop store: every sample of a list decoded once into an on-disk, memory-mapped array.

Decoding a 450x450 JPEG and a .mat file costs far more than a training step on a small crop, so each
sample is decoded **once** into a small uint8 image (:class:`~headpose.crops.store.spec.StoreSpec`
says which): for training, the region every random crop of its face lies within
(:meth:`~headpose.crops.protocols.CropProtocol.training_region`, ``cache_side(image_size)`` pixels
square), and with framing augmentation a second image of the same size, ``contexts.npy``, of
the region's surroundings that re-framed crops reach (:mod:`headpose.crops.framing`); for
evaluation, the final crop of the crop protocol, cut from the full image
(:meth:`~headpose.crops.protocols.CropProtocol.evaluation_crop`). Training, validation and
evaluation all read these prepared crops (:class:`~headpose.crops.store.spec.PreparedCrops`)
through :func:`prepare_crops`, which opens the store of a list, building it first when it does
not exist yet.

A store is the folder ``<root>/<key>/``: ``images.npy`` (``(N, S, S, 3)`` uint8, read with
``numpy.load(mmap_mode="r")``), ``face_boxes.npy`` and ``regions.npy`` (float64, full-image
pixels), ``angles_deg.npy`` (float32) and ``meta.json`` (count, spec, and each file's size and
SHA-256, plus that of sampled image rows). The package's modules, one job each:
:mod:`~headpose.crops.store.spec` (what a store holds, its files, the prepared crops),
:mod:`~headpose.crops.store.key` (where stores live, the content key),
:mod:`~headpose.crops.store.build` (building one) and :mod:`~headpose.crops.store.read` (the
check before each use, opening one).
"""

from __future__ import annotations

import time

from headpose.crops.store.build import build_store
from headpose.crops.store.key import store_key, store_root
from headpose.crops.store.read import open_store, store_size_bytes
from headpose.crops.store.spec import PreparedCrops, StoreSpec
from headpose.datasets.registry import Sample


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
