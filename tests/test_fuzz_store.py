"""A crop store damaged after its build is never trusted; a full disk while building is one line.

Issue 23: each case the issue names (pixels or angles zeroed, ``images.npy`` of another shape, a
truncated file, an overwritten header) and a property-based fuzz of the store files (the sibling
of test_fuzz_samples.py): any damage to any byte of any file is named in one line and the store
is rebuilt to exactly the crops of a fresh build, never used as it is.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import as_samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_fixtures import HOPENET
from training_fixtures import write_tiny_dataset

from headpose.crops.crop import cache_side
from headpose.crops.store import build as build_module
from headpose.crops.store import prepare_crops
from headpose.crops.store import read as read_module
from headpose.crops.store.build import size_text
from headpose.crops.store.key import STORE_ENV, store_key
from headpose.crops.store.read import VERIFY_ENV
from headpose.crops.store.spec import (
    ANGLES_FILE,
    BOXES_FILE,
    IMAGES_FILE,
    META_FILE,
    REGIONS_FILE,
    ROW_DIGESTS_FILE,
    StoreSpec,
)
from headpose.errors import HeadposeError

IMAGE_SIZE = 32
SPEC = StoreSpec(IMAGE_SIZE, HOPENET, "train")
COUNT = 12


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list:
    return as_samples(write_tiny_dataset(tmp_path_factory.mktemp("samples"), COUNT))


@pytest.fixture(scope="module")
def pristine(samples, tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A built store (its folder) and the arrays a fresh build holds."""
    root = tmp_path_factory.mktemp("pristine_root")
    key = store_key(samples, SPEC, workers=1)
    folder, _ = build_module.build_store(samples, SPEC, key, root, workers=1)
    crops = read_module.open_store(folder, samples, SPEC)
    arrays = {
        "images": np.array(crops.images),
        "boxes": crops.face_boxes,
        "angles": crops.angles_deg,
    }
    return folder, arrays


def damaged_copy(pristine_folder: Path, root: Path) -> Path:
    """A copy of the pristine store in ``root`` (the store root a test points the env at)."""
    if root.exists():
        shutil.rmtree(root)
    folder = root / pristine_folder.name
    shutil.copytree(pristine_folder, folder)
    return folder


def reopened(samples: list[str], root: Path, monkeypatch, capsys, full: bool = False):
    """``prepare_crops`` with the store root ``root``: (crops, its output lines)."""
    monkeypatch.setenv(STORE_ENV, str(root))
    if full:
        monkeypatch.setenv(VERIFY_ENV, "full")
    else:
        monkeypatch.delenv(VERIFY_ENV, raising=False)
    capsys.readouterr()
    crops = prepare_crops(samples, SPEC, workers=1)
    return crops, capsys.readouterr().out.splitlines()


def assert_fresh(crops, arrays: dict[str, np.ndarray]) -> None:
    assert np.array_equal(crops.images, arrays["images"])
    assert np.array_equal(crops.face_boxes, arrays["boxes"])
    assert np.array_equal(crops.angles_deg, arrays["angles"])


def assert_rebuilt(lines: list[str], folder: Path) -> None:
    damage = [line for line in lines if "fails its check" in line]
    assert len(damage) == 1, lines
    assert damage[0].startswith(f"crop store {folder} fails its check (")
    assert damage[0].endswith("; rebuilding it")
    assert any("built in" in line for line in lines), lines
    assert not list(folder.parent.glob(".*.tmp"))


def _zero_pixels(folder: Path) -> None:
    images = np.load(folder / IMAGES_FILE, mmap_mode="r+")
    images[:] = 0
    images.flush()


def _zero_angles(folder: Path) -> None:
    angles = np.load(folder / ANGLES_FILE)
    np.save(folder / ANGLES_FILE, np.zeros_like(angles))


def _other_shape(folder: Path) -> None:
    side = cache_side(IMAGE_SIZE)
    np.save(folder / IMAGES_FILE, np.zeros((COUNT, side // 2, side // 2, 3), dtype=np.uint8))


def _truncated(folder: Path) -> None:
    path = folder / IMAGES_FILE
    os.truncate(path, path.stat().st_size // 2)


def _header_overwritten(folder: Path) -> None:
    with open(folder / IMAGES_FILE, "r+b") as handle:
        handle.write(b"\0" * 64)


def _meta_lost(folder: Path) -> None:
    (folder / META_FILE).unlink()


def _older_store(folder: Path) -> None:  # a store of before the checksums: rebuilt, not trusted
    meta = json.loads((folder / META_FILE).read_text())
    del meta["files"]
    (folder / META_FILE).write_text(json.dumps(meta))


def _file_instead(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.write_bytes(b"not a store")


ISSUE_CASES = {
    "pixels zeroed": _zero_pixels,
    "angles zeroed": _zero_angles,
    "images of another shape": _other_shape,
    "truncated images": _truncated,
    "overwritten header": _header_overwritten,
    "meta deleted": _meta_lost,
    "older store without checksums": _older_store,
    "a file instead of the folder": _file_instead,
}


@pytest.mark.parametrize("case", sorted(ISSUE_CASES))
def test_a_damaged_store_is_named_in_one_line_and_rebuilt(
    case, samples, pristine, tmp_path, monkeypatch, capsys
):
    pristine_folder, arrays = pristine
    folder = damaged_copy(pristine_folder, tmp_path / "root")
    ISSUE_CASES[case](folder)
    crops, lines = reopened(samples, tmp_path / "root", monkeypatch, capsys)
    assert_rebuilt(lines, folder)
    assert_fresh(crops, arrays)
    _, again = reopened(samples, tmp_path / "root", monkeypatch, capsys)  # rebuilt: trusted
    assert any(" reused (" in line for line in again), again
    assert not any("fails its check" in line for line in again), again


def test_an_intact_store_is_reused_without_a_note(samples, pristine, tmp_path, monkeypatch, capsys):
    pristine_folder, arrays = pristine
    damaged_copy(pristine_folder, tmp_path / "root")
    for full in (False, True):
        crops, lines = reopened(samples, tmp_path / "root", monkeypatch, capsys, full=full)
        assert not any("fails its check" in line for line in lines)
        assert any(" reused (" in line for line in lines), lines
        assert_fresh(crops, arrays)


def test_full_verification_finds_one_changed_pixel(
    samples, pristine, tmp_path, monkeypatch, capsys
):
    pristine_folder, arrays = pristine
    folder = damaged_copy(pristine_folder, tmp_path / "root")
    images = np.load(folder / IMAGES_FILE, mmap_mode="r+")
    images[COUNT // 2, 3, 4, 1] ^= 1
    images.flush()
    del images
    crops, lines = reopened(samples, tmp_path / "root", monkeypatch, capsys, full=True)
    assert_rebuilt(lines, folder)
    assert "images.npy: SHA-256 differs" in "\n".join(lines)
    assert_fresh(crops, arrays)


def test_the_quick_check_finds_rows_its_fixed_sample_skips(tmp_path, monkeypatch):
    """Damage in rows the evenly spread sample does not read used to pass (MAE 40.58 instead of
    21.64 on a real run): the rows drawn afresh on every open catch a damaged fifth of the rows
    with probability 1 - 0.8 ** 256."""
    many = as_samples(write_tiny_dataset(tmp_path / "samples", 150, size=24))
    root = tmp_path / "root"
    key = store_key(many, SPEC, workers=1)
    folder, _ = build_module.build_store(many, SPEC, key, root, workers=1)
    sampled = set(read_module.sampled_rows(150))
    unsampled = [row for row in range(150) if row not in sampled]
    images = np.load(folder / IMAGES_FILE, mmap_mode="r+")
    for row in unsampled[::3]:  # 29 of 150 rows, none of the fixed sample
        images[row] = 255 - images[row]
    images.flush()
    del images
    with pytest.raises(read_module.StoreDamaged, match=r"images.npy: row \d+ differs"):
        read_module.verify_store(folder, 150, SPEC)


def test_an_evaluation_store_is_hashed_whole_on_every_open(tmp_path):
    stems = as_samples(write_tiny_dataset(tmp_path / "samples", 8, size=24))
    spec = StoreSpec(IMAGE_SIZE, HOPENET, "eval")
    folder, _ = build_module.build_store(
        stems, spec, store_key(stems, spec, 1), tmp_path / "root", 1
    )
    read_module.verify_store(folder, 8, spec)
    images = np.load(folder / IMAGES_FILE, mmap_mode="r+")
    images[5, 3, 4, 1] ^= 1  # one bit of one pixel
    images.flush()
    del images
    with pytest.raises(read_module.StoreDamaged, match="images.npy: SHA-256 differs"):
        read_module.verify_store(folder, 8, spec)  # no HEADPOSE_CROP_STORE_VERIFY needed


# --- Fuzz: any damage to any file -----------------------------------------------------------------

STORE_FILES = (IMAGES_FILE, BOXES_FILE, REGIONS_FILE, ANGLES_FILE, ROW_DIGESTS_FILE, META_FILE)
damage = st.one_of(
    st.tuples(st.just("flip"), st.sampled_from(STORE_FILES), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.sampled_from(STORE_FILES), st.floats(0, 0.999), st.just(0)),
    st.tuples(st.just("append"), st.sampled_from(STORE_FILES), st.just(0.0), st.integers(1, 300)),
    st.tuples(st.just("delete"), st.sampled_from(STORE_FILES), st.just(0.0), st.just(0)),
    st.tuples(st.just("folder"), st.sampled_from(STORE_FILES), st.just(0.0), st.just(0)),
)


def apply_damage(folder: Path, change: tuple) -> None:
    kind, name, where, amount = change
    path = folder / name
    data = bytearray(path.read_bytes())
    if kind == "flip":  # xor one byte with a non-zero value: always another content
        data[min(int(where * len(data)), len(data) - 1)] ^= amount
        path.write_bytes(bytes(data))
    elif kind == "truncate":
        path.write_bytes(bytes(data[: int(where * len(data))]))
    elif kind == "append":
        path.write_bytes(bytes(data) + b"\x01" * amount)
    elif kind == "delete":
        path.unlink()
    else:
        path.unlink()
        path.mkdir()


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(change=damage)
def test_fuzz_any_damaged_store_file_is_rebuilt_never_used(
    change, samples, pristine, tmp_path, monkeypatch, capsys
):
    pristine_folder, arrays = pristine
    folder = damaged_copy(pristine_folder, tmp_path / "root")
    meta = json.loads((folder / META_FILE).read_text())
    apply_damage(folder, change)
    # full verification: every byte counts (the quick check samples image rows)
    crops, lines = reopened(samples, tmp_path / "root", monkeypatch, capsys, full=True)
    assert_fresh(crops, arrays)
    try:  # a flipped byte of meta.json's white space (a space to a tab) changes nothing
        unchanged = json.loads((folder / META_FILE).read_text()) == meta
    except (OSError, ValueError):
        unchanged = False
    if not unchanged:
        assert_rebuilt(lines, folder)


@pytest.mark.parametrize("full", [False, True])
def test_a_damaged_rows_digest_in_meta_is_rebuilt_under_either_check(
    full, samples, pristine, tmp_path, monkeypatch, capsys
):
    """Found by the fuzz test above: the full check hashed whole image files but skipped the
    recorded row digest, so a meta.json damaged there was reused."""
    pristine_folder, arrays = pristine
    folder = damaged_copy(pristine_folder, tmp_path / "root")
    meta = json.loads((folder / META_FILE).read_text())
    digest = meta["files"][IMAGES_FILE]["rows_sha256"]
    meta["files"][IMAGES_FILE]["rows_sha256"] = ("1" if digest[0] == "0" else "0") + digest[1:]
    (folder / META_FILE).write_text(json.dumps(meta))
    crops, lines = reopened(samples, tmp_path / "root", monkeypatch, capsys, full=full)
    assert_fresh(crops, arrays)
    assert_rebuilt(lines, folder)


# --- A full disk --------------------------------------------------------------------------------


def test_no_room_to_reserve_the_store_is_one_line_and_leaves_nothing(
    samples, tmp_path, monkeypatch
):
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    root = tmp_path / "root"
    key = store_key(samples, SPEC, workers=1)
    with pytest.raises(HeadposeError) as error:
        build_module.build_store(samples, SPEC, key, root, workers=1)
    message = str(error.value)
    assert message.startswith(f"crop store {root}: needs ") and "free space" in message
    assert "0.0 GiB" not in message and "\n" not in message
    assert sorted(path.name for path in root.iterdir()) == [f"{key}.lock"]


def test_a_write_failing_mid_build_is_one_line_and_leaves_nothing(samples, tmp_path, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available on this system")
    real_open = open

    def images_on_a_full_disk(path, mode="r", *args, **kwargs):
        if Path(path).name == IMAGES_FILE and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(build_module, "open", images_on_a_full_disk, raising=False)
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, length: None)
    root = tmp_path / "root"
    key = store_key(samples, SPEC, workers=1)
    with pytest.raises(HeadposeError) as error:
        build_module.build_store(samples, SPEC, key, root, workers=1)
    message = str(error.value)
    assert str(root / key) in message and "No space left on device" in message
    assert "\n" not in message
    assert sorted(path.name for path in root.iterdir()) == [f"{key}.lock"]


def test_too_little_free_space_is_said_in_readable_units(samples, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 5000))
    key = store_key(samples, SPEC, workers=1)
    needed = COUNT * cache_side(IMAGE_SIZE) ** 2 * 3
    with pytest.raises(HeadposeError, match=f"needs {size_text(needed)}, only 5 KiB free"):
        build_module.build_store(samples, SPEC, key, tmp_path / "root", workers=1)
    assert size_text(needed).endswith("KiB") or size_text(needed).endswith("MiB")


@pytest.mark.parametrize(
    "count, text",
    [(0, "0 bytes"), (1023, "1023 bytes"), (5000, "5 KiB"), (3 * 2**20 + 2**19, "3.5 MiB")]
    + [(int(1.2 * 2**30), "1.20 GiB")],
)
def test_sizes_are_said_in_the_unit_that_shows_them(count, text):
    assert size_text(count) == text
