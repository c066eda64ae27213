"""BIWI beyond protocol 1: face boxes from the project's detector (a test set's
``frame_list: detector``), protocol 2 (held-out sequences of a BIWI training folder, the split
written down), and training on stored-box samples (their box is their training crop)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT, as_samples
from model_fixtures import write_checkpoint
from stage_fixtures import load_stage
from training_fixtures import train_on_lists, write_tiny_dataset

from headpose.crops.framing import NO_FRAMING
from headpose.crops.protocols import DEFAULT_PROTOCOL
from headpose.crops.protocols.stored_box import StoredBox
from headpose.crops.training_draws import draw_item
from headpose.datasets.augment import build_augmentation
from headpose.datasets.biwi import (
    FormatBIWI,
    detected_entries,
    detection_crop_box,
    head_centre_px,
)
from headpose.datasets.filelists import (
    DatasetScan,
    SampleCheck,
    build_filelists,
    held_out_split,
    write_filelists,
)
from headpose.datasets.registry import resolve
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import evaluate
from headpose.evaluation.test_sets import evaluation_samples
from headpose.inference.loading import open_model
from headpose.io.lists import read_list
from headpose.synth.biwi import generate_biwi

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FSA_BOX = (270, 177, 146, 180)  # 01/frame_00003 in Biwi_FSA-Net.npz: x, y, w, h


@pytest.fixture(scope="module")
def hpdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("biwi") / "hpdb"
    generate_biwi(root, sequences=4, frames_per_sequence=10, seed=0, workers=1)
    return root


def iou(first: tuple, second: tuple) -> float:
    """IoU of two (x, y, w, h) boxes."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = first, second
    width = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0, min(ay + ah, by + bh) - max(ay, by))
    return width * height / (aw * ah + bw * bh - width * height)


# --- Detector boxes -----------------------------------------------------------------------------


def test_a_detection_is_enlarged_as_fsanet_enlarged_its_mtcnn_boxes_and_clipped():
    assert detection_crop_box((100.0, 50.0, 200.0, 150.0), (640, 480)) == (60, 10, 181, 181)
    # 0.4 of the size beyond each side, truncated, clipped to the 640 x 480 image
    assert detection_crop_box((10.0, 400.0, 110.0, 470.0), (640, 480)) == (0, 372, 151, 108)


def test_the_detection_holding_the_projected_head_centre_is_kept(hpdb):
    entries = FormatBIWI.scan(hpdb).entries[:3]
    centres = [head_centre_px(entry) for entry in entries]

    def detect(image):
        u, v = centres[calls.pop(0)]
        return [
            (u + 100, v - 40, u + 180, v + 40),  # another face, beside the head
            (u - 60, v - 60, u + 40, v + 60),  # holds the centre, its centre 10 px away
            (u - 48, v - 58, u + 52, v + 62),  # holds it, 2 px away: kept
        ]

    calls = [0, 1, 2]
    boxed, missed = detected_entries(entries, detect)
    assert not missed and len(boxed) == 3
    for entry, (u, v), result in zip(entries, centres, boxed, strict=True):
        assert result == f"{entry}@" + ",".join(
            map(str, detection_crop_box((u - 48, v - 58, u + 52, v + 62), (640, 480)))
        )
    boxed, missed = detected_entries(entries[:1], lambda image: [(0.0, 0.0, 5.0, 5.0)])
    assert boxed == [] and missed == [
        (entries[0], "no detected face holds the projected head centre")
    ]


def test_detector_boxes_of_the_genuine_frame_are_near_its_fsanet_box(biwi_sample_dir, yunet_model):
    from headpose.app.detect import make_detector

    detector = make_detector("yunet", str(yunet_model))
    entry = (biwi_sample_dir / "hpdb" / "01" / "frame_00003").as_posix()
    boxed, missed = detected_entries([entry], lambda image: [f.box for f in detector.detect(image)])
    assert not missed
    box = tuple(int(v) for v in boxed[0].split("@")[1].split(","))
    assert iou(box, FSA_BOX) > 0.75, box


def test_a_test_set_boxed_by_the_detector_lists_the_frames_it_missed(hpdb):
    stems, skipped = evaluation_samples(
        hpdb, 99, "detector", lambda image: [(0.0, 0.0, 640.0, 480.0)]
    )
    assert len(stems) == 40 and all("@" in stem.entry for stem in stems) and not skipped
    with pytest.raises(HeadposeError, match="no detected face holds the projected head centre"):
        evaluation_samples(hpdb, 99, "detector", lambda image: [])


def test_a_detector_frame_list_without_a_detector_or_on_another_format_is_one_line(hpdb, tmp_path):
    with pytest.raises(HeadposeError, match="frame_list: detector needs a face detector"):
        evaluation_samples(hpdb, 99, "detector")

    write_tiny_dataset(tmp_path / "aflw", 3, seed=0, size=60)
    with pytest.raises(HeadposeError, match="frame_list: detector applies to BIWI folders"):
        evaluation_samples(tmp_path / "aflw", 99, "detector", lambda image: [])


# --- Protocol 2 ---------------------------------------------------------------------------------


def test_held_out_sequences_are_whole_sequences_drawn_by_the_seed(hpdb, tmp_path):
    lists = build_filelists(hpdb, "unused", 99, 0.3, seed=0, workers=1, held_out_sequences=1)
    split = lists.split
    assert split["held_out_sequences"] == 1 and len(split["test_sequences"]) == 1
    assert sorted(split["train_sequences"] + split["test_sequences"]) == ["01", "02", "03", "04"]
    sequence = FormatBIWI.sequence
    assert {sequence(entry) for entry in lists.test} == set(split["test_sequences"])
    assert {sequence(entry) for entry in lists.train + lists.val} == set(split["train_sequences"])
    assert len(lists.test) == 10 and len(lists.train) + len(lists.val) == 30
    assert lists.val and lists.metrics["split"] == split

    write_filelists(lists, tmp_path / "lists")
    assert json.loads((tmp_path / "lists" / "split.json").read_text()) == split
    again = build_filelists(hpdb, "unused", 99, 0.3, seed=0, workers=1, held_out_sequences=1)
    assert again.test == lists.test and again.train == lists.train
    drawn = {
        tuple(held_out_split(scan_of(hpdb), 2, seed)[2]["test_sequences"]) for seed in range(8)
    }
    assert len(drawn) > 1  # the seed decides


def scan_of(hpdb: Path) -> DatasetScan:
    entries = FormatBIWI.scan(hpdb).entries
    checks = [SampleCheck(resolve(entry), (0.0, 0.0, 0.0), None) for entry in entries]
    return DatasetScan("train", checks)


def test_the_split_names_the_people_recorded_on_both_sides():
    # Sequences 03 and 15 are the same person (F03): on opposite sides, they are named.
    checks = [
        SampleCheck(resolve(f"/data/hpdb/{sequence}/frame_00001"), (0.0, 0.0, 0.0), None)
        for sequence in ("03", "15", "07")
    ]
    splits = [held_out_split(DatasetScan("train", checks), 1, seed)[2] for seed in range(20)]
    apart = [s for s in splits if "03" in s["test_sequences"] or "15" in s["test_sequences"]]
    together = [s for s in splits if s["test_sequences"] == ["07"]]
    assert apart and together
    assert all(s["people_on_both_sides"] == ["F03"] for s in apart)
    assert all(s["people_on_both_sides"] == [] for s in together)


def test_held_out_sequences_on_a_folder_without_sequences_or_too_few_is_one_line(hpdb, tmp_path):

    write_tiny_dataset(tmp_path / "w300", 4, seed=0, size=60)
    with pytest.raises(HeadposeError, match="recorded in sequences .BIWI.; 300w_lp samples"):
        build_filelists(tmp_path / "w300", "unused", 99, 0.3, 0, 1, held_out_sequences=1)
    with pytest.raises(HeadposeError, match="held_out_sequences is 4, but train_data holds 4"):
        build_filelists(hpdb, "unused", 99, 0.3, 0, 1, held_out_sequences=4)


def test_the_held_out_sequences_param_is_checked_in_one_line():
    from headpose.params import load_params, validate

    params = load_params(REPO_ROOT / "params.yaml").as_dict()
    with pytest.raises(HeadposeError, match="held_out_sequences is 30; expected an integer"):
        validate({**params, "held_out_sequences": 30})


# --- Training on stored-box samples -------------------------------------------------------------


def test_a_stored_box_sample_is_trained_on_its_box():
    box = (270.0, 177.0, 416.0, 357.0)
    for seed in range(5):
        draw = draw_item((0, 1, seed), box, 64, StoredBox(DEFAULT_PROTOCOL), NO_FRAMING)
        landmark = draw_item((0, 1, seed), box, 64, DEFAULT_PROTOCOL, NO_FRAMING)
        assert draw.rectangle == box and landmark.rectangle != box
        assert (draw.flipped, draw.blurred) == (landmark.flipped, landmark.blurred)


def test_300w_aug_rotates_landmark_samples_only(hpdb, tmp_path):
    entries = FormatBIWI.scan(hpdb).entries[:5]
    augmentation = build_augmentation(
        as_samples(entries), hpdb, tmp_path / "aug", True, 0.5, [10.0], 99, seed=0, workers=1
    )
    assert augmentation.metrics["chosen"] == 0 and augmentation.metrics["not_rotatable"] == 5
    assert read_list(tmp_path / "aug" / "train.txt") == entries


@pytest.mark.slow
def test_a_held_out_sequence_split_trains_on_biwi_and_evaluates_them(hpdb, tmp_path):
    lists = build_filelists(hpdb, "unused", 99, 0.25, seed=0, workers=1, held_out_sequences=1)
    write_filelists(lists, tmp_path / "lists")
    model = train_on_lists(tmp_path / "lists")
    result = evaluate(open_model(model), as_samples(lists.test), "test.txt", workers=1)
    assert result.metrics["count"] == 10 and np.isfinite(result.metrics["mae"]["mean"])
    assert result.metrics["crop_protocol"] == "stored_box"


def test_the_analyze_stage_leaves_framing_unmeasured_for_stored_box_lists(
    hpdb, tmp_path, monkeypatch
):
    lists = build_filelists(hpdb, "unused", 99, 0.25, seed=0, workers=1, held_out_sequences=1)
    write_filelists(lists, tmp_path / "data" / "filelists")
    train = as_samples(lists.train)
    build_augmentation(train, hpdb, tmp_path / "data" / "aug", True, 0.1, [10.0], 99, 0)
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    stage = load_stage("analyze")
    stage.main(
        ["--params", "params.yaml", "--filelists", "data/filelists", "--augmented", "data/aug",
         "--metrics", "metrics.json", "--plots", "plots"]
    )  # fmt: skip
    framing = json.loads((tmp_path / "metrics.json").read_text())["framing"]
    assert framing["measured"] is False and "no landmark sample" in framing["reason"]


def test_the_evaluate_stage_boxes_biwi_frames_with_the_detector(
    hpdb, tmp_path, monkeypatch, yunet_model
):
    """--frame-list detector runs the project's detector (here a local YuNet model): the frames
    where it finds the head are scored, the others listed as skipped."""
    write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=64,
                     training_mean_deg=[0.0, 0.0, 0.0])  # fmt: skip
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    stage = load_stage("evaluate")
    arguments = [
        "--params", "params.yaml", "--checkpoint", "model.pt", "--data", str(hpdb),
        "--frame-list", "detector", "--detector-model", str(yunet_model),
        "--metrics", "m.json", "--per-image", "e.csv", "--plots", "p", "--timing", "t.json",
    ]  # fmt: skip
    stage.main(arguments)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["count"] > 0 and metrics["count"] + metrics["skipped"] == 40


def test_headpose_evaluate_boxes_biwi_frames_with_the_detector(hpdb, tmp_path, yunet_model, capsys):
    from cli_fixtures import run_cli

    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=64)
    arguments = ["evaluate", str(checkpoint), "--data", str(hpdb), "--frame-list", "detector"]
    assert run_cli([*arguments, "--detector-model", str(yunet_model)]) == 0
    captured = capsys.readouterr()
    skipped = captured.err.count("no detected face holds the projected head centre")
    assert 0 < skipped < 40
    assert f"{40 - skipped} samples ({skipped} skipped, listed above with the reason)" in (
        captured.out
    )
