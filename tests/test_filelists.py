"""File lists: grouping of derived samples, the stable split, validation and skip reporting."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO_ROOT, as_samples
from stage_fixtures import stage_command

from headpose.datasets.filelists import (
    build_filelists,
    read_angles_table,
    scan_dataset,
    split_train_val,
    write_filelists,
)
from headpose.datasets.mat import write_mat, write_sample
from headpose.datasets.naming import group_key, rotated_name
from headpose.errors import HeadposeError
from headpose.io.lists import read_list


def write_fixture_sample(stem: Path, yaw_deg: float = 10.0, pitch_deg: float = -5.0, **extra):
    """A tiny valid sample (32x32 jpg, 68 landmarks); ``extra`` replaces .mat arrays."""
    rng = np.random.default_rng(abs(hash(stem.name)) % 2**32)
    pose = [math.radians(pitch_deg), math.radians(yaw_deg), 0.1, 16, 16, 0, 0.01]
    arrays = {
        "Pose_Para": np.array([pose], dtype=np.float32),
        "pt2d": rng.uniform(4, 28, size=(2, 68)),
    }
    arrays.update(extra)
    write_sample(stem, rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8), arrays)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("data/300W_LP/AFW/AFW_1051618982_1_0", "AFW_1051618982_1"),
        ("data/300W_LP/AFW/AFW_1051618982_1_13", "AFW_1051618982_1"),
        ("data/300W_LP/AFW_Flip/AFW_1051618982_1_4", "AFW_1051618982_1"),
        ("data/300W_AUG/AFW/AFW_1051618982_1_0_rot-20", "AFW_1051618982_1"),
        ("data/300W_AUG/AFW/" + rotated_name("AFW_1051618982_1_2", 10), "AFW_1051618982_1"),
        ("AFW_1051618982_2_0", "AFW_1051618982_2"),  # another face in the same photo
        ("IBUG/IBUG_image_008_1_0", "IBUG_image_008_1"),
        ("LFPW/LFPW_image_test_0001_0", "LFPW_image_test_0001"),
        ("AFLW2000/image00002", "image00002"),
        ("faces/face_001", "face_001"),  # one number only: not a pose variant
    ],
)
def test_group_key_joins_variants_flips_and_rotations(name, key):
    assert group_key(name) == key


def _lp_names(photos: range) -> list[str]:
    names = []
    for photo in photos:
        for folder in ("AFW", "AFW_Flip"):
            names += [f"d/{folder}/AFW_{photo}_1_{k}" for k in range(4)]
        names += [f"aug/AFW/AFW_{photo}_1_0_rot{a}" for a in (-20, 10)]
    return names


def test_split_keeps_every_photo_on_one_side_and_is_stable():
    names = as_samples(_lp_names(range(400)))
    train, val = split_train_val(names, seed=3, val_fraction=0.1)
    assert sorted(s.entry for s in train + val) == sorted(s.entry for s in names)
    train_groups = {group_key(n.entry) for n in train}
    val_groups = {group_key(n.entry) for n in val}
    assert not train_groups & val_groups
    assert 0.05 < len(val_groups) / 400 < 0.15
    # Adding unrelated photos does not move anything already placed.
    more = names + as_samples(_lp_names(range(400, 900)))
    more_train, more_val = split_train_val(more, 3, 0.1)
    assert set(val) <= set(more_val) and set(train) <= set(more_train)
    # Another seed gives another split; zero fraction gives no validation set.
    assert split_train_val(names, seed=4, val_fraction=0.1)[1] != val
    assert split_train_val(names, seed=3, val_fraction=0.0) == (names, [])


def test_split_of_two_photos_leaves_neither_side_empty():
    train, val = split_train_val(as_samples(_lp_names(range(2))), seed=0, val_fraction=0.1)
    assert train and val


def test_real_aflw2000_gives_1969_test_samples(aflw2000_dir):
    scan = scan_dataset(aflw2000_dir, "test", "aflw2000")
    assert len(scan.checks) == 2000
    assert all(check.problem is None for check in scan.checks)
    in_range = [c for c in scan.checks if max(abs(a) for a in c.angles_deg) <= 99]
    assert len(in_range) == 1969


@pytest.fixture()
def messy_dataset(tmp_path) -> tuple[Path, Path]:
    """A training folder with good and bad samples, and a clean test folder."""
    train = tmp_path / "train"
    for photo in range(6):
        for k in range(2):
            write_fixture_sample(train / "AFW" / f"AFW_{photo}_1_{k}")
    write_fixture_sample(train / "landmarks" / "AFW" / "AFW_0_1_0")  # ignored folder
    write_fixture_sample(train / "AFW" / "AFW_90_1_0", yaw_deg=120.0)  # out of range
    write_fixture_sample(train / "AFW" / "AFW_91_1_0", Pose_Para=np.full((1, 7), np.nan))
    write_fixture_sample(train / "AFW" / "AFW_92_1_0")
    (train / "AFW" / "AFW_92_1_0.jpg").write_bytes(b"not a jpeg")
    write_fixture_sample(train / "AFW" / "AFW_93_1_0")
    write_mat(train / "AFW" / "AFW_93_1_0.mat", {"pt2d": np.ones((2, 68))})  # no Pose_Para
    write_fixture_sample(train / "AFW" / "AFW_94_1_0")
    (train / "AFW" / "AFW_94_1_0.mat").unlink()  # image without annotation
    write_fixture_sample(train / "AFW" / "AFW_95_1_0")
    (train / "AFW" / "AFW_95_1_0.jpg").unlink()  # annotation without image
    test = tmp_path / "test"
    for index in range(3):
        write_fixture_sample(test / f"image{index:05d}")
    write_fixture_sample(test / "Code" / "image99999")  # ignored: flat scan
    return train, test


def test_bad_samples_are_skipped_with_reasons_never_silently(messy_dataset, tmp_path):
    train_root, test_root = messy_dataset
    lists = build_filelists(train_root, test_root, 99, val_fraction=0.2, seed=0)
    assert len(lists.train) + len(lists.val) == 12
    assert {group_key(s) for s in lists.train}.isdisjoint({group_key(s) for s in lists.val})
    assert len(lists.test) == 3
    reasons = {Path(sample).name: reason for sample, _, reason in lists.skipped}
    assert set(reasons) == {f"AFW_{n}_1_0" for n in range(90, 96)}
    assert "beyond +-99" in reasons["AFW_90_1_0"]
    assert "not finite" in reasons["AFW_91_1_0"]
    assert "decodable" in reasons["AFW_92_1_0"]
    assert "no Pose_Para" in reasons["AFW_93_1_0"]
    assert "no .mat" in reasons["AFW_94_1_0"]
    assert "no .jpg" in reasons["AFW_95_1_0"]
    assert lists.metrics["train"] == {
        "pairs_found": 16,
        "unpaired_files": 2,
        "skipped_invalid": 3,
        "skipped_out_of_range": 1,
        "usable": 12,
        "groups": 6,
        "train": len(lists.train),
        "val": len(lists.val),
    }
    write_filelists(lists, tmp_path / "lists")
    assert read_list(tmp_path / "lists" / "train.txt") == lists.train
    assert read_list(tmp_path / "lists" / "test.txt") == [
        (test_root / f"image{i:05d}").as_posix() for i in range(3)
    ]
    skipped_rows = (tmp_path / "lists" / "skipped.tsv").read_text().splitlines()
    assert len(skipped_rows) == 1 + 6
    angles = {
        sample: yaw_pitch_roll
        for sample, _, yaw_pitch_roll in read_angles_table(tmp_path / "lists" / "angles.tsv")
    }
    # The out-of-range sample keeps its angles (for the "all" statistics); the NaN one has none.
    assert angles[(train_root / "AFW" / "AFW_90_1_0").as_posix()][0] == pytest.approx(120)
    assert (train_root / "AFW" / "AFW_91_1_0").as_posix() not in angles
    # Two workers give the same lists.
    assert build_filelists(train_root, test_root, 99, 0.2, 0, workers=2).train == lists.train


def test_missing_empty_and_unusable_folders_raise_clear_errors(messy_dataset, tmp_path):
    train_root, test_root = messy_dataset
    with pytest.raises(HeadposeError, match="does not exist"):
        build_filelists(tmp_path / "nowhere", test_root, 99, 0.1, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeadposeError, match=r"holds no samples \(NAME.jpg \+ NAME.mat"):
        build_filelists(train_root, tmp_path / "empty", 99, 0.1, 0)
    with pytest.raises(HeadposeError, match="no usable training samples.*13 out of range"):
        build_filelists(train_root, test_root, max_angle_deg=5, val_fraction=0.1, seed=0)


def _run_stage(tmp_path: Path, **overrides) -> subprocess.CompletedProcess:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params.update(overrides)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    script, *arguments = stage_command("filelists", params)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_stage_writes_lists_relative_to_the_working_dir(messy_dataset, tmp_path):
    result = _run_stage(tmp_path, train_data="train", test_data="test", workers=1)
    assert result.returncode == 0, result.stderr
    assert read_list(tmp_path / "data" / "filelists" / "test.txt") == [
        f"test/image{i:05d}" for i in range(3)
    ]
    assert (tmp_path / "metrics" / "filelists.json").is_file()


def test_stage_reports_a_missing_folder_in_one_line(tmp_path):
    result = _run_stage(tmp_path, train_data="no/such/folder", test_data="test")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: dataset folder no/such/folder does not exist or is not a folder"
    ]
