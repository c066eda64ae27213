"""The crop store: round trip, content key, atomic builds, sharing between processes, and the
uint8 batches normalised on the device."""

from __future__ import annotations

import multiprocessing
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import as_samples
from protocol_fixtures import HOPENET, VISIBLE
from torch.utils.data import DataLoader
from training_fixtures import write_tiny_dataset

from headpose.crops import store
from headpose.crops.crop import cache_side
from headpose.crops.pipeline import PoseDataset, model_input, preprocess
from headpose.crops.store import build as build_module
from headpose.crops.store import key as key_module
from headpose.crops.store import prepare_crops
from headpose.crops.store.build import build_store, prepare_sample
from headpose.crops.store.key import store_key, store_root, workspace_root
from headpose.crops.store.spec import StoreSpec
from headpose.datasets.registry import Sample
from headpose.models.registry import IMAGENET, IMAGENET_MEAN, IMAGENET_STD

TRAIN = StoreSpec(32, HOPENET, "train")


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Sample]:
    return as_samples(write_tiny_dataset(tmp_path_factory.mktemp("samples"), 12))


@pytest.mark.parametrize(
    "spec",
    [
        TRAIN,
        StoreSpec(32, HOPENET, "eval"),
        StoreSpec(32, VISIBLE, "train"),
        StoreSpec(32, HOPENET, "train", context_extent=3.5),  # framing augmentation
    ],
)
def test_store_holds_exactly_the_direct_crops(samples, spec):
    crops = prepare_crops(samples, spec, workers=2)
    assert isinstance(crops.images, np.memmap) and not crops.images.flags.writeable
    side = cache_side(32) if spec.purpose == "train" else 32
    assert crops.images.shape == (12, side, side, 3)
    if spec.has_context:
        assert isinstance(crops.contexts, np.memmap) and crops.contexts.shape == (12, side, side, 3)
    else:
        assert crops.contexts is None
    for index, stem in enumerate(samples):
        images, face_box, region, angles = prepare_sample((stem, spec))
        assert np.array_equal(crops.images[index], images[0])
        if spec.has_context:
            assert len(images) == 2 and np.array_equal(crops.contexts[index], images[1])
        assert np.array_equal(crops.face_boxes[index], face_box)
        assert np.array_equal(crops.regions[index], region)
        assert np.array_equal(crops.angles_deg[index], angles)
    again = prepare_crops(samples, spec, workers=1)  # reused: the same folder
    assert again.images.filename == crops.images.filename


def test_key_follows_every_input_and_nothing_else(samples, tmp_path, monkeypatch):
    copies = as_samples(tmp_path / Path(sample.entry).name for sample in samples)
    for sample, copy in zip(samples, copies, strict=True):
        for suffix in (".jpg", ".mat"):
            shutil.copy(sample.entry + suffix, copy.entry + suffix)
    key = store_key(copies, TRAIN, workers=1)
    Path(copies[0].entry + ".jpg").touch()  # a new mtime, the same bytes
    assert store_key(copies, TRAIN, workers=2) == key
    assert store_key(copies[::-1], TRAIN, workers=1) != key  # the list's order
    assert store_key(copies[:-1], TRAIN, workers=1) != key  # the list's samples
    assert store_key(copies, StoreSpec(48, HOPENET, "train"), workers=1) != key  # the size
    assert store_key(copies, StoreSpec(32, VISIBLE, "train"), workers=1) != key  # protocol
    assert store_key(copies, StoreSpec(32, HOPENET, "eval"), workers=1) != key  # purpose
    data = bytearray(Path(copies[3].entry + ".jpg").read_bytes())
    data[-3] ^= 1  # one bit of one image
    Path(copies[3].entry + ".jpg").write_bytes(bytes(data))
    changed = store_key(copies, TRAIN, workers=1)
    assert changed != key
    # the crop code: an edited crop.py (other margins, another looseness) gives another key
    package = tmp_path / "package"
    shutil.copytree(key_module.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    crop_source = package / "crops" / "crop.py"
    crop_source.write_text(crop_source.read_text().replace("EVAL_K = 0.2", "EVAL_K = 0.25"))
    monkeypatch.setattr(key_module, "PACKAGE_DIR", package)
    assert store_key(copies, TRAIN, workers=1) != changed


def test_interrupted_build_is_never_trusted(samples, tmp_path, monkeypatch):
    root = tmp_path / "root"
    key = store_key(samples, TRAIN, workers=1)
    calls = []

    def interrupted(task):
        calls.append(task)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return prepare_sample(task)

    monkeypatch.setattr(build_module, "prepare_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_store(samples, TRAIN, key, root, workers=1)
    assert not (root / key).exists()
    assert not list(root.glob(f".{key}.*"))  # an exception cleans up
    # a killed build leaves its temporary folder: ignored, then deleted by the next build
    leftover = root / f".{key}.killed.tmp"
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"half")
    monkeypatch.setattr(build_module, "prepare_sample", prepare_sample)
    folder, build_s = build_store(samples, TRAIN, key, root, workers=1)
    assert folder == root / key and build_s > 0 and not leftover.exists()
    assert build_store(samples, TRAIN, key, root, workers=1) == (folder, 0.0)


def _checksum(crops) -> tuple[str, int]:
    return type(crops.images).__name__, int(crops.images.astype(np.int64).sum())


def test_two_processes_map_the_same_store(samples):
    crops = prepare_crops(samples, TRAIN, workers=1)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        seen = pool.map(_checksum, [crops, crops])
    # each process received the file name and mapped the file (no copy of the bytes)
    assert seen == [("memmap", int(np.asarray(crops.images, np.int64).sum()))] * 2


def _old_preprocess(crop_rgb: np.ndarray) -> torch.Tensor:
    """The float path before the store: normalised per item in the loader."""
    image = torch.from_numpy(np.ascontiguousarray(crop_rgb)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image - mean) / std


def test_uint8_batches_normalised_on_the_device_equal_the_float_path(samples):
    dataset = PoseDataset(prepare_crops(samples, StoreSpec(32, HOPENET, "eval"), workers=1))
    batch, _ = next(iter(DataLoader(dataset, batch_size=6)))
    assert batch.dtype == torch.uint8 and batch.shape == (6, 32, 32, 3)
    normalised = model_input(batch, torch.device("cpu"), IMAGENET)
    expected = torch.stack([_old_preprocess(dataset[index][0].numpy()) for index in range(6)])
    assert normalised.is_contiguous() and torch.equal(normalised, expected)
    assert torch.equal(preprocess(batch[1].numpy(), IMAGENET), expected[1])


def test_store_root_is_shared_by_queued_experiments(tmp_path, monkeypatch):
    workspace = tmp_path / "repo"
    copy = workspace / ".dvc" / "tmp" / "exps" / "tmpab12"
    (copy / ".dvc").mkdir(parents=True)  # a copy is a workspace of its own
    (workspace / "stages").mkdir()
    assert workspace_root(copy / "nested") == workspace.resolve()
    assert workspace_root(workspace / "stages") == workspace.resolve()
    assert workspace_root(tmp_path) == tmp_path.resolve()  # no workspace: the folder itself
    monkeypatch.delenv(key_module.STORE_ENV)
    monkeypatch.chdir(copy)
    assert store_root() == workspace.resolve() / ".cache" / "crops"
    monkeypatch.setenv(key_module.STORE_ENV, str(tmp_path / "elsewhere"))
    assert store_root() == tmp_path / "elsewhere"


def test_the_code_digest_covers_every_registered_format_and_protocol_module():
    """The modules a store's crops come from are derived from the classes, never listed by
    hand: every registered dataset format's module (and its parents') and every registered crop
    protocol's module is hashed for the stores that use it, and editing one changes the key."""
    from headpose.crops.protocols import PROTOCOLS
    from headpose.datasets.registry import formats

    for dataset_format in formats().values():
        for protocol in PROTOCOLS.values():
            files = key_module.code_files(protocol, [dataset_format])
            defining = {Path(sys.modules[cls.__module__].__file__).resolve()
                        for cls in (type(protocol), dataset_format)}  # fmt: skip
            assert defining <= set(files), (protocol, dataset_format)
    # the fixed part: every module of the store package
    package = {Path(module.__file__).resolve() for module in (store, build_module, key_module)}
    assert package <= set(files)


def test_editing_a_format_module_gives_another_key(samples, monkeypatch):
    key = store_key(samples, TRAIN, workers=1)
    mat_module = sys.modules[samples[0].format.__module__]
    source = Path(mat_module.__file__).read_bytes()
    original = Path.read_bytes

    def edited(path: Path) -> bytes:
        data = original(path)
        return data + b"\n# edited\n" if data == source else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert store_key(samples, TRAIN, workers=1) != key
