"""Several models in one report (issue 37, item 3): ``headpose evaluate A B ... --data X`` scores
each model on the same samples under the published, tight, own and detector crops, each model
fed at its own input size and normalisation; ``headpose sweep A B ...`` draws a curve per model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import run_cli
from model_fixtures import write_checkpoint
from protocol_fixtures import VISIBLE
from training_fixtures import write_tiny_dataset

from headpose.app import model_report
from headpose.app.api import HeadPoseModel
from headpose.app.detect import IDENTITY_CALIBRATION, FaceBox, make_detector
from headpose.app.model_report import (
    ReportModel,
    annotated_face,
    format_model_report,
    metric_columns,
    model_labels,
    score_models,
)
from headpose.crops.protocols import PROTOCOLS, register_protocol
from headpose.crops.protocols.visible import Visible
from headpose.errors import HeadposeError
from headpose.evaluation import evaluate as evaluate_module
from headpose.evaluation.evaluate import evaluate
from headpose.evaluation.test_sets import evaluation_samples
from headpose.inference.loading import open_model

pytestmark = pytest.mark.usefixtures("one_torch_thread", "few_timing_runs")

HALF = [0.5, 0.5, 0.5]


class LooseVisible(Visible):
    """A crop protocol of this test only: the visible crop with twice its margins, so a model
    trained on it has an ``own`` crop that is neither the published nor the tight one."""

    name = "test_loose_visible"

    def loosen_box(self, box, k, mode):
        return super().loosen_box(box, 2 * k, mode)


@pytest.fixture(scope="module")
def loose_protocol():
    register_protocol(LooseVisible)
    yield PROTOCOLS.get(LooseVisible.name)
    PROTOCOLS.unregister(LooseVisible.name)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("aflw_like")
    write_tiny_dataset(folder, 5, size=48)
    return folder


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, loose_protocol) -> dict[str, Path]:
    """Three checkpoints: 32 px ImageNet-normalised (trained on the visible crop, as a meta
    without crop_protocol says), 48 px normalised by 0.5 on the published crop, 40 px on the
    test's own protocol."""
    folder = tmp_path_factory.mktemp("models")
    return {
        "small": write_checkpoint(folder / "small.pt", "shufflenet_v2_x1_0", image_size=32),
        "large": write_checkpoint(
            folder / "large.pt",
            "shufflenet_v2_x1_0",
            image_size=48,
            seed=1,
            crop_protocol="hopenet",
            mean=HALF,
            std=HALF,
        ),
        "loose": write_checkpoint(
            folder / "loose.pt",
            "shufflenet_v2_x1_0",
            image_size=40,
            seed=2,
            crop_protocol=loose_protocol.name,
        ),
    }


class RecordingModel:
    """Wraps a loaded model's angle function: the input shapes and value ranges it is fed."""

    def __init__(self, loaded):
        self.shapes: set[tuple[int, ...]] = set()
        self.lowest = np.inf
        self.inner = loaded.predict
        self.loaded = dataclasses.replace(loaded, predict=self)

    def __call__(self, batch):
        self.shapes.add(tuple(batch.shape[1:]))
        self.lowest = min(self.lowest, float(batch.min()))
        return self.inner(batch)


class BoxDetector:
    """A detector that finds, in each image of the test set but one, the tight box of its
    visible landmarks (and a stray face elsewhere), as a detector object predict takes."""

    name = "boxes"
    calibration = IDENTITY_CALIBRATION

    def __init__(self, samples, missing: int):
        self.boxes = {}
        for index, sample in enumerate(samples):
            image, labels = sample.read()
            box = VISIBLE.face_box(labels)
            faces = [FaceBox(0.0, 0.0, 3.0, 3.0, 0.9)]  # holds no annotated centre
            if index != missing:
                faces.append(FaceBox(*box, 0.8))
            self.boxes[hashlib.sha256(image.tobytes()).hexdigest()] = faces
        self.calls = 0

    def detect(self, image_rgb):
        self.calls += 1
        return self.boxes[hashlib.sha256(image_rgb.tobytes()).hexdigest()]


def test_metric_columns_are_every_metric_of_the_whole_set():
    """MAE's four numbers, and any other summary of the whole set the evaluation adds (a
    rotation error holding only a mean: one column); never a subset, the baseline or the model."""
    summary = {"count": 3, "yaw": 1.0, "pitch": 2.0, "roll": 3.0, "mean": 2.0}
    metrics = {
        "count": 3,
        "crop_protocol": "hopenet",
        "mae": summary,
        "mae_within_30": summary,
        "mae_beyond_30": summary,
        "geodesic": {"count": 3, "mean": 4.5},
        "geodesic_within_30": {"count": 1, "mean": 1.0},
        "baseline_training_mean_mae": summary,
        "other_protocols": {"visible": {"mae": summary}},
        "model": {"arch": "resnet18", "image_size": 32},
    }
    assert metric_columns(metrics) == {
        "mae_yaw": 1.0,
        "mae_pitch": 2.0,
        "mae_roll": 3.0,
        "mae_mean": 2.0,
        "geodesic": 4.5,
    }


def test_each_model_is_scored_under_each_crop_at_its_own_size(
    tiny_folder, tiny_models, loose_protocol
):
    samples, _ = evaluation_samples(tiny_folder)
    recorders = {name: RecordingModel(open_model(path)) for name, path in tiny_models.items()}
    models = [ReportModel(name, recorder.loaded) for name, recorder in recorders.items()]
    detector = BoxDetector(samples, missing=2)
    report, missed = score_models(models, samples, str(tiny_folder), detector=detector, workers=1)

    crops = {name: [row.crop for row in report.rows if row.model == name] for name in recorders}
    assert crops == {
        "small": ["published", "tight", "detector"],  # its own crop is the tight one
        "large": ["published", "tight", "detector"],  # its own crop is the published one
        "loose": ["published", "tight", "own", "detector"],
    }
    # each model fed at its own side, normalised its own way (0.5: nothing below -1; ImageNet's
    # mean and std take black well below)
    assert recorders["small"].shapes == {(3, 32, 32)}
    assert recorders["large"].shapes == {(3, 48, 48)}
    assert recorders["loose"].shapes == {(3, 40, 40)}
    assert recorders["large"].lowest >= -1.0 - 1e-6 and recorders["small"].lowest < -1.5
    # the protocol rows are the model's evaluation under that crop
    for row in report.rows:
        if row.crop == "detector":
            continue
        protocol = PROTOCOLS.get(row.crop_protocol)
        alone = evaluate(recorders[row.model].loaded, samples, "tiny", crop_protocol=protocol)
        assert row.metrics["mae"] == alone.metrics["mae"], (row.model, row.crop)
    assert [row.crop_protocol for row in report.rows if row.crop == "own"] == [loose_protocol.name]
    # the detector row: each image searched once for all models, the face predict would crop
    assert detector.calls == len(samples)
    assert report.detector_found == len(samples) - 1 and missed == [
        (str(samples[2]), model_report.NOT_FOUND)
    ]
    for model in models:
        (row,) = [r for r in report.rows if r.model == model.label and r.crop == "detector"]
        assert row.count == len(samples) - 1 and row.crop_protocol == "boxes"
        predictor = HeadPoseModel(model.loaded)
        expected = []
        for index, sample in enumerate(samples):
            if index == 2:
                continue
            image, labels = sample.read()
            (pose,) = [
                pose
                for pose in predictor.predict(image, detector=detector)
                if pose.box == VISIBLE.face_box(labels)
            ]
            expected.append(np.abs(np.subtract(pose_angles(pose), labels.angles_deg)))
        mean_errors = np.mean(expected, axis=0)
        for angle, value in zip(("yaw", "pitch", "roll"), mean_errors, strict=True):
            assert row.metrics["mae"][angle] == pytest.approx(value, abs=1e-3)

    table = format_model_report(report)
    assert "detector crop: boxes" in table and f"in {len(samples) - 1} of {len(samples)}" in table
    header = next(line for line in table.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "px", "crop", "mae_yaw", "mae_pitch", "mae_roll"] + [
        "mae_mean",
        "geodesic",
        "maev",
        "n",
    ]
    assert "own (test_loose_visible)" in table and "published (hopenet)" in table


def pose_angles(pose) -> tuple[float, float, float]:
    return pose.yaw_deg, pose.pitch_deg, pose.roll_deg


def test_a_metric_the_evaluation_adds_becomes_a_column(tiny_folder, tiny_models, monkeypatch):
    """The columns come from the evaluation's result: a metric beside MAE (as the rotation
    errors are) is a column of the table and a key of every JSON row, detector's included."""
    original = evaluate_module.error_metrics

    def with_made_up(errors, training_mean):
        return {**original(errors, training_mean), "made_up": {"count": 0, "mean": 7.25}}

    monkeypatch.setattr(evaluate_module, "error_metrics", with_made_up)
    monkeypatch.setattr(model_report, "error_metrics", with_made_up)
    samples, _ = evaluation_samples(tiny_folder)
    models = [ReportModel("small", open_model(tiny_models["small"]))]
    report, _ = score_models(
        models, samples, "tiny", detector=BoxDetector(samples, missing=0), workers=1
    )
    assert all(row["made_up"] == 7.25 for row in report.to_json()["rows"])
    header = next(line for line in format_model_report(report).splitlines() if line[:6] == "model ")
    assert header.split()[-4:] == ["geodesic", "maev", "made_up", "n"]


def test_the_detector_keeps_the_face_holding_the_annotated_centre(tiny_folder):
    samples, _ = evaluation_samples(tiny_folder)
    _, labels = samples[0].read()
    x0, y0, x1, y1 = VISIBLE.face_box(labels)
    near = FaceBox(x0, y0, x1, y1)
    wide = FaceBox(x0 - 10, y0 - 10, x1 + 30, y1 + 30)  # holds the centre too, centred farther
    elsewhere = FaceBox(x1 + 1, y1 + 1, x1 + 20, y1 + 20)
    assert annotated_face([wide, elsewhere, near], labels) == near
    assert annotated_face([elsewhere], labels) is None


def test_the_cli_prints_one_table_and_writes_json_rows(tiny_folder, tiny_models, tmp_path, capsys):
    out = tmp_path / "report.json"
    arguments = [str(tiny_models["small"]), str(tiny_models["large"]), "--data", str(tiny_folder)]
    assert run_cli(["evaluate", *arguments, "--detector", "haar", "--json", str(out)]) == 0
    output = capsys.readouterr().out
    assert output.count("published (hopenet)") == 2 and output.count("detector (haar)") == 2
    assert "\nsmall.pt " in output and "\nlarge.pt " in output
    rows = json.loads(out.read_text())["rows"]
    assert [(row["model"], row["image_size"], row["crop"]) for row in rows] == [
        ("small.pt", 32, "published"),
        ("small.pt", 32, "tight"),
        ("small.pt", 32, "detector"),
        ("large.pt", 48, "published"),
        ("large.pt", 48, "tight"),
        ("large.pt", 48, "detector"),
    ]
    assert {"mae_yaw", "mae_pitch", "mae_roll", "mae_mean", "geodesic", "maev", "count"} <= set(
        rows[0]
    )
    # one model keeps its table; --json gives its rows
    single = tmp_path / "single.json"
    argv = ["evaluate", str(tiny_models["small"]), "--data", str(tiny_folder)]
    assert run_cli([*argv, "--compare-protocols", "--json", str(single)]) == 0
    output = capsys.readouterr().out
    assert "crop protocol hopenet (published)" in output and "MAE, GE, MAEV (degrees)" in output
    crops = [row["crop"] for row in json.loads(single.read_text())["rows"]]
    assert crops[:2] == ["published", "tight"] and set(crops[2:]) <= {"other"}
    argv += ["--crop-protocol", "visible", "--json", str(single)]
    assert run_cli(argv) == 0 and "crop protocol visible" in capsys.readouterr().out
    assert [row["crop"] for row in json.loads(single.read_text())["rows"]] == ["tight"]


@pytest.mark.parametrize("command", ["evaluate", "sweep"])
def test_a_model_that_does_not_open_is_one_line_and_nothing_is_written(
    command, tiny_folder, tiny_models, tmp_path, capsys
):
    notes = tmp_path / "notes.pt"
    notes.write_text("not a model\n")
    out, plot = tmp_path / "out.json", tmp_path / "out.png"
    outputs = ["--json", str(out)] + (["--plot", str(plot)] if command == "sweep" else [])
    for bad, named in (
        (str(notes), str(notes)),
        (str(tmp_path), str(tmp_path)),
        (str(tmp_path / "absent.onnx"), str(tmp_path / "absent.onnx")),
        (str(tiny_models["small"]), "is given twice"),
    ):
        argv = [command, str(tiny_models["small"]), bad, "--data", str(tiny_folder), *outputs]
        assert run_cli(argv) == 2
        err = capsys.readouterr().err
        error = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and named in error[0] and "Traceback" not in err
        assert not out.exists() and not plot.exists()


def test_one_model_only_options_are_refused_with_several(tiny_folder, tiny_models, capsys):
    models = [str(tiny_models["small"]), str(tiny_models["large"])]
    for flag in ("--baseline", "--compare-protocols"):
        assert run_cli(["evaluate", *models, "--data", str(tiny_folder), flag]) == 2
        assert f"{flag} applies to one model" in capsys.readouterr().err


def test_labels_are_file_names_unless_two_share_one():
    assert model_labels(["a/model.pt", "b/other.onnx"]) == ["model.pt", "other.onnx"]
    assert model_labels(["a/model.pt", "b/model.pt"]) == ["a/model.pt", "b/model.pt"]
    with pytest.raises(HeadposeError, match="a/model.pt is given twice"):
        model_labels(["a/model.pt", "a/model.pt"])


def test_the_sweep_draws_a_curve_per_model(tiny_folder, tiny_models, tmp_path, monkeypatch):
    from headpose.cli import sweep as sweep_command

    drawn = {}

    def record_plot(scales, curves, published_scale, path, title):
        drawn.update(curves=curves, path=path, title=title)
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(sweep_command, "plot_framing_sweep", record_plot)
    out, plot = tmp_path / "sweep.json", tmp_path / "sweep.png"
    argv = ["sweep", str(tiny_models["small"]), str(tiny_models["large"])]
    argv += ["--data", str(tiny_folder), "--scales", "1,1.5", "--shifts", "0.1"]
    assert run_cli([*argv, "--json", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())
    assert [(model["label"], model["image_size"]) for model in report["models"]] == [
        ("small.pt", 32),
        ("large.pt", 48),
    ]
    assert all(len(model["rows"]) == 2 * 5 for model in report["models"])
    assert list(drawn["curves"]) == ["small.pt", "large.pt"] and drawn["path"] == str(plot)
    for model in report["models"]:
        centred = [
            row["mae_mean"] for row in model["rows"] if row["shift_x"] == row["shift_y"] == 0
        ]
        assert drawn["curves"][model["label"]] == pytest.approx(centred)


def test_the_real_detector_crop_is_predicts(aflw2000_dir, yunet_model, tiny_models, tmp_path):
    """On real AFLW2000 photos with YuNet: the detector row scores the face ``headpose
    predict`` would find and crop, with the calibration of that detector."""
    folder = tmp_path / "real"
    folder.mkdir()
    for stem in sorted(path.stem for path in aflw2000_dir.glob("image0*.jpg"))[:6]:
        for suffix in (".jpg", ".mat"):
            shutil.copy(aflw2000_dir / f"{stem}{suffix}", folder / f"{stem}{suffix}")
    samples, _ = evaluation_samples(folder)
    detector = make_detector("yunet", str(yunet_model))
    loaded = open_model(tiny_models["large"])
    report, missed = score_models(
        [ReportModel("large", loaded)], samples, str(folder), detector=detector, workers=1
    )
    (row,) = [row for row in report.rows if row.crop == "detector"]
    assert row.crop_protocol == "yunet" and row.count == len(samples) - len(missed) >= 4
    predictor = HeadPoseModel(loaded)
    left_out = {entry for entry, _ in missed}
    errors = []
    for sample in samples:
        if str(sample) in left_out:
            continue
        image, labels = sample.read()
        face = annotated_face(detector.detect(image), labels)
        (pose,) = [
            pose for pose in predictor.predict(image, detector=detector) if pose.box == face.box
        ]
        errors.append(np.abs(np.subtract(pose_angles(pose), labels.angles_deg)))
    assert row.metrics["mae"]["mean"] == pytest.approx(float(np.mean(errors)), abs=1e-3)


def test_a_set_of_stored_boxes_gives_one_stored_box_row_per_model(tiny_models, tmp_path):
    """An FSA-Net ``.npz`` stores its crops: no protocol applies, each model gets its stored-box
    row (at its own size) and the detector's."""
    crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    np.savez(tmp_path / "BIWI_test.npz", image=crops, pose=np.zeros((3, 3)), img_size=64)
    samples, _ = evaluation_samples(tmp_path / "BIWI_test.npz")
    models = [ReportModel(name, open_model(tiny_models[name])) for name in ("small", "large")]
    detector = make_detector("haar")
    report, missed = score_models(models, samples, "npz", detector=detector, workers=1)
    assert [(row.model, row.image_size, row.crop, row.count) for row in report.rows] == [
        ("small", 32, "stored box", 3),
        ("small", 32, "detector", 3 - len(missed)),
        ("large", 48, "stored box", 3),
        ("large", 48, "detector", 3 - len(missed)),
    ]
    for model, row in zip(models, report.rows[::2], strict=True):
        alone = evaluate(model.loaded, samples, "npz", workers=1)
        assert row.metrics["mae"] == alone.metrics["mae"]
