"""The synthetic BIWI-format set: the raw layout and file formats the BIWI reader (and the
published scripts) expect, poses that read back through the benchmark formula, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from headpose.datasets import registry
from headpose.datasets.biwi import FormatBIWI, read_calibration
from headpose.synth.biwi import biwi_jobs, generate_biwi

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hpdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("biwi") / "hpdb"
    generate_biwi(root, sequences=2, frames_per_sequence=8, seed=0, workers=1)
    return root


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_layout_is_biwis(hpdb):
    assert sorted(p.name for p in hpdb.iterdir()) == ["01", "02"]
    frames = sorted(p.name for p in (hpdb / "01").glob("frame_*_rgb.png"))
    numbers = [int(name[6:11]) for name in frames]
    assert numbers == [3, 4, 5, 6, 7, 8, 10, 11]  # starts at 00003, one number skipped
    assert int(sorted((hpdb / "02").glob("frame_*_rgb.png"))[0].name[6:11]) == 0
    for sequence in ("01", "02"):
        names = {p.name for p in (hpdb / sequence).iterdir()}
        assert {"rgb.cal", "depth.cal"} <= names
        assert len(names) == 2 + 2 * 8  # nothing else: FSA-Net's sorted-list pairing works
    png = (hpdb / "01" / "frame_00003_rgb.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height, png[24], png[25]) == (640, 480, 8, 2)  # 8-bit, colour type 2 (RGB)
    assert registry.recognise(hpdb) is FormatBIWI
    assert registry.recognise(hpdb.parent) is FormatBIWI


def test_poses_read_back_through_the_benchmark_formula(hpdb):
    jobs = biwi_jobs(2, 8, seed=0)
    entries = FormatBIWI.scan(hpdb).entries
    assert len(entries) == len(jobs) == 16
    read = np.array([registry.resolve(entry).header().angles_deg for entry in entries])
    written = np.array([job.pose_deg for job in sorted(jobs, key=lambda j: (j.sequence, j.frame))])
    assert np.abs(read - written).max() < 2e-3  # pose.txt keeps about 6 digits


def test_the_calibration_files_are_the_real_sequence_01s(hpdb, biwi_sample_dir):
    for name in ("rgb.cal", "depth.cal"):
        real = biwi_sample_dir / "hpdb" / "01" / name
        assert (hpdb / "02" / name).read_bytes() == real.read_bytes()
    assert read_calibration(hpdb / "01" / "rgb.cal").size_wh == (640, 480)


def test_the_set_is_the_same_for_a_seed_whatever_the_workers(hpdb, tmp_path):
    again = tmp_path / "hpdb"
    generate_biwi(again, sequences=2, frames_per_sequence=8, seed=0, workers=2)
    assert folder_digest(again) == folder_digest(hpdb)
