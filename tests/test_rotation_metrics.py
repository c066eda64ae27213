"""The rotation errors beside Euler MAE (geodesic error and MAEV): hand-worked values, the cases
where Euler MAE misleads, their keys in the metrics, ``headpose compare --metric`` and the Python
API's errors against a label."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from model_fixtures import write_checkpoint

import headpose
from headpose.cli import main
from headpose.compare.report import compare, format_markdown, report_json
from headpose.compare.runs import parse_per_image
from headpose.compare.stats import Run
from headpose.errors import HeadposeError
from headpose.evaluation.metrics import (
    PoseErrors,
    absolute_errors_deg,
    error_metrics,
    rotation_errors_deg,
)
from headpose.geometry import rotation_matrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def matrix_deg(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """The dataset-convention matrix of one (yaw, pitch, roll) triple in degrees, built one by
    one with geometry.rotation_matrix (pitch, yaw, roll radians), apart from the vectorised
    path under test."""
    return rotation_matrix(math.radians(pitch_deg), math.radians(yaw_deg), math.radians(roll_deg))


def reference_errors_deg(predicted: tuple, true: tuple) -> tuple[float, float]:
    """Geodesic error and MAEV of one pair by the textbook formulas: the clipped acos of
    (trace(R_true^T R_pred) - 1) / 2, and the mean of the acos of the dot products of the
    matching columns."""
    r_true, r_pred = matrix_deg(*true), matrix_deg(*predicted)
    cos_geodesic = (np.trace(r_true.T @ r_pred) - 1.0) / 2.0
    geodesic = math.degrees(math.acos(min(1.0, max(-1.0, cos_geodesic))))
    columns = [
        math.degrees(math.acos(min(1.0, max(-1.0, float(r_true[:, j] @ r_pred[:, j])))))
        for j in range(3)
    ]
    return geodesic, sum(columns) / 3


# --- Hand-worked values --------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_pure_10_degree_error_about_one_axis(axis):
    """A pure rotation by t about one axis leaves the column along that axis where it was (0
    degrees between it and its match) and turns the other two columns by t each, so the geodesic
    error (the angle of R_true^T R_pred = the one rotation) is t and MAEV is (0 + t + t) / 3 =
    2t / 3: for t = 10, GE 10 and MAEV 6.667; Euler MAE is (10 + 0 + 0) / 3 = 3.333."""
    predicted = np.zeros((1, 3))
    predicted[0, axis] = 10.0
    geodesic, maev = rotation_errors_deg(predicted, np.zeros((1, 3)))[0]
    assert geodesic == pytest.approx(10.0, abs=1e-9)
    assert maev == pytest.approx(20.0 / 3.0, abs=1e-9)
    assert absolute_errors_deg(predicted, np.zeros((1, 3))).mean() == pytest.approx(10.0 / 3.0)


def test_a_yaw_error_on_a_pitched_head_is_still_a_rotation_about_the_yaw_axis():
    """R = Rx(pitch) Ry(yaw) Rz(roll): with roll 0, R_pred = R_true Ry(10) when only yaw differs
    by 10, so R_true^T R_pred = Ry(10) whatever the pitch: GE 10, and the columns of R_pred are
    R_true's turned by Ry(10), so MAEV is 2 * 10 / 3 as above."""
    errors = rotation_errors_deg([[30.0, 40.0, 0.0], [-45.0, -70.0, 0.0]],
                                 [[20.0, 40.0, 0.0], [-55.0, -70.0, 0.0]])  # fmt: skip
    assert errors[:, 0] == pytest.approx([10.0, 10.0], abs=1e-9)
    assert errors[:, 1] == pytest.approx([20.0 / 3.0, 20.0 / 3.0], abs=1e-9)
    # with roll, the same 10 degrees of yaw are a 10 degree rotation about another axis: GE 10
    assert rotation_errors_deg([[30.0, 40.0, 25.0]], [[20.0, 40.0, 25.0]])[0, 0] == pytest.approx(
        10.0, abs=1e-9
    )


def test_gimbal_lock_where_euler_mae_misleads():
    """In this convention the middle rotation is yaw's (R = Rx(pitch) Ry(yaw) Rz(roll)), so the
    gimbal lock is at |yaw| = 90, where only pitch - sign(yaw) * roll is defined
    (geometry.euler_from_matrices): (yaw 90, pitch 30, roll 0) and (yaw 90, pitch 0, roll -30)
    are one rotation. Euler MAE says (0 + 30 + 30) / 3 = 20 degrees; GE and MAEV say 0."""
    true, predicted = (90.0, 30.0, 0.0), (90.0, 0.0, -30.0)
    assert np.allclose(matrix_deg(*true), matrix_deg(*predicted), atol=1e-12)  # the same rotation
    assert absolute_errors_deg([predicted], [true]).mean() == pytest.approx(20.0)
    assert rotation_errors_deg([predicted], [true])[0] == pytest.approx([0.0, 0.0], abs=1e-9)
    # yaw -90: pitch + roll is what counts
    true, predicted = (-90.0, 30.0, 0.0), (-90.0, 10.0, 20.0)
    assert np.allclose(matrix_deg(*true), matrix_deg(*predicted), atol=1e-12)
    assert rotation_errors_deg([predicted], [true])[0] == pytest.approx([0.0, 0.0], abs=1e-9)
    # pitch 90 is no lock in this convention: the brief's (yaw 30, pitch 90, roll 0) and (yaw 0,
    # pitch 90, roll -30) are different rotations, and GE says how far apart
    true, predicted = (30.0, 90.0, 0.0), (0.0, 90.0, -30.0)
    assert not np.allclose(matrix_deg(*true), matrix_deg(*predicted), atol=1e-3)
    assert rotation_errors_deg([predicted], [true])[0] == pytest.approx(
        reference_errors_deg(predicted, true), abs=1e-9
    )


def test_the_two_euler_triples_of_one_rotation_are_0_apart():
    """(p, y, r) and (p + 180, 180 - y, r + 180) are one rotation (docs/conventions.md): Euler
    MAE is far from 0, GE and MAEV are 0."""
    true = (20.0, 30.0, 5.0)  # yaw, pitch, roll
    other = (180.0 - 20.0, 30.0 + 180.0, 5.0 + 180.0)
    assert np.allclose(matrix_deg(*true), matrix_deg(*other), atol=1e-12)
    assert absolute_errors_deg([other], [true]).mean() > 150
    assert rotation_errors_deg([other], [true])[0] == pytest.approx([0.0, 0.0], abs=1e-9)


def test_the_errors_are_precise_near_0_and_180_degrees():
    """A clipped acos of (trace - 1) / 2 gives 0 or 1.5e-8 rad for a rotation of 1e-6 degrees
    (its cosine is 1 within one float64 step); the errors must keep it, and 180 stays 180."""
    tiny = rotation_errors_deg([[1e-6, 0.0, 0.0]], [[0.0, 0.0, 0.0]])[0]
    assert tiny == pytest.approx([1e-6, 2e-6 / 3], rel=1e-6)
    half_turn = rotation_errors_deg([[180.0, 0.0, 0.0], [179.9999, 0.0, 0.0]], np.zeros((2, 3)))
    assert half_turn[:, 0] == pytest.approx([180.0, 179.9999], abs=1e-9)
    assert half_turn[:, 1] == pytest.approx([120.0, 2 * 179.9999 / 3], abs=1e-9)


def test_a_batch_matches_the_textbook_formulas_pair_by_pair():
    rng = np.random.default_rng(0)
    true = rng.uniform(-99, 99, (50, 3))
    predicted = true + rng.normal(0, 40, (50, 3))
    errors = rotation_errors_deg(predicted, true)
    assert errors.shape == (50, 2)
    by_hand = [
        reference_errors_deg(tuple(p), tuple(t)) for p, t in zip(predicted, true, strict=True)
    ]
    assert errors == pytest.approx(np.array(by_hand), abs=1e-6)
    with pytest.raises(HeadposeError, match="2 predicted and 3 true angle triples"):
        rotation_errors_deg(predicted[:2], true[:3])


def test_the_metrics_add_geodesic_and_maev_beside_every_mae():
    """The MAE keys and their values are what they were; the rotation errors only add keys
    (``geodesic``, ``maev`` and their subsets and baseline, each ``{"count", "mean"}``)."""
    true = np.array([[0.0, 0.0, 0.0], [90.0, 30.0, 0.0], [50.0, 0.0, 0.0]])
    predicted = np.array([[10.0, 0.0, 0.0], [90.0, 0.0, -30.0], [50.0, 0.0, 0.0]])
    metrics = error_metrics(PoseErrors(["a", "b", "c"], true, predicted), np.zeros(3))
    mae_keys = ["mae", "mae_within_30", "mae_beyond_30", "baseline_training_mean_mae"]
    rotation_keys = [
        f"{prefix}{name}{suffix}"
        for prefix, suffixes in (
            ("", ("", "_within_30", "_beyond_30")),
            ("baseline_training_mean_", ("",)),
        )  # fmt: skip
        for name in ("geodesic", "maev")
        for suffix in suffixes
    ]
    assert sorted(metrics) == sorted(mae_keys + rotation_keys)
    assert metrics["mae"] == {"count": 3, "yaw": 3.3333, "pitch": 10.0, "roll": 10.0,
                              "mean": 7.7778}  # fmt: skip
    # errors: (10, 6.667), (0, 0), (0, 0)
    assert metrics["geodesic"] == {"count": 3, "mean": 3.3333}
    assert metrics["maev"] == {"count": 3, "mean": 2.2222}
    assert metrics["geodesic_within_30"] == {"count": 1, "mean": 10.0}
    assert metrics["maev_beyond_30"] == {"count": 2, "mean": 0.0}
    # always answering (0, 0, 0): sample b is 90 of yaw, then 30 about another axis away
    expected_b = reference_errors_deg((0.0, 0.0, 0.0), (90.0, 30.0, 0.0))[0]
    assert metrics["baseline_training_mean_geodesic"]["mean"] == pytest.approx(
        (0.0 + expected_b + 50.0) / 3, abs=1e-4
    )
    empty = error_metrics(PoseErrors([], np.zeros((0, 3)), np.zeros((0, 3))), None)
    assert empty["geodesic"] == {"count": 0, "mean": None}


# --- headpose compare --metric -------------------------------------------------------------------

# Two test images: b's true pose is at gimbal lock. The "euler" model answers b with the other
# Euler triple of the true rotation (Euler MAE 20, GE 0) and a with a 2 degree yaw error; the
# "rotation" model is off by 3 degrees of yaw on both.
CSV_HEADER = (
    "stem,true_yaw_deg,true_pitch_deg,true_roll_deg,predicted_yaw_deg,predicted_pitch_deg,"
    "predicted_roll_deg,abs_error_yaw_deg,abs_error_pitch_deg,abs_error_roll_deg\n"
)
PREDICTIONS = {
    "euler": [(2.0, 0.0, 0.0), (90.0, 0.0, -30.0)],
    "rotation": [(3.0, 0.0, 0.0), (87.0, 30.0, 0.0)],
}
TRUE = [(0.0, 0.0, 0.0), (90.0, 30.0, 0.0)]


def per_image_text(model: str) -> str:
    """A per-image CSV as the evaluate stage wrote it before the rotation columns existed."""
    rows = []
    for stem, true, predicted in zip(("a", "b"), TRUE, PREDICTIONS[model], strict=True):
        errors = np.abs(np.subtract(predicted, true))
        rows.append(",".join([stem, *map(str, true), *map(str, predicted), *map(str, errors)]))
    return CSV_HEADER + "\n".join(rows) + "\n"


def runs_of(model: str, seeds: tuple[int, ...] = (0, 1)) -> list[Run]:
    stems, true, errors, rotation = parse_per_image(per_image_text(model), f"{model}.csv")
    params = {"head": json.dumps(model)}
    return [
        Run(f"{model}{seed}", f"{model}{seed}", {**params, "train_seed": json.dumps(seed)}, {},
            stems, true, errors + 0.01 * seed, rotation + 0.01 * seed)
        for seed in seeds
    ]  # fmt: skip


def test_the_per_image_csv_gives_the_rotation_errors():
    """Columns of the rotation errors when the CSV has them, else from its predicted angles."""
    _, _, errors, rotation = parse_per_image(per_image_text("euler"), "e.csv")
    assert errors.mean(axis=1) == pytest.approx([2 / 3, 20.0])
    assert rotation == pytest.approx(np.array([[2.0, 4 / 3], [0.0, 0.0]]), abs=1e-9)
    with_columns = "stem,true_yaw_deg,true_pitch_deg,true_roll_deg,abs_error_yaw_deg,"
    with_columns += "abs_error_pitch_deg,abs_error_roll_deg,geodesic_error_deg,maev_deg\n"
    _, _, _, rotation = parse_per_image(with_columns + "x,1,2,3,0.5,0.25,1,0.75,0.5\n", "f.csv")
    assert rotation.tolist() == [[0.75, 0.5]]
    with pytest.raises(HeadposeError, match="f.csv holds a non-finite error"):
        parse_per_image(with_columns + "x,1,2,3,0.5,0.25,1,nan,0.5\n", "f.csv")


def test_compare_by_geodesic_error_ranks_by_it():
    """By Euler MAE the "rotation" model looks far better than the "euler" one (mean MAE 1.0
    against 10.3); by the geodesic error it is worse on every image (3 against 2 and 0): the
    gimbal-lock answer costs nothing as a rotation."""
    runs = runs_of("euler") + runs_of("rotation")
    by_mae = compare(runs, baseline="head=euler", replicates=200)
    assert by_mae.rows[1].interval.difference == pytest.approx(1.0 - (2 / 3 + 20.0) / 2)
    by_geodesic = compare(runs, baseline="head=euler", replicates=200, metric="geodesic")
    row = by_geodesic.rows[1]
    assert row.spread["geodesic"][0] == pytest.approx(3.005)  # mean of (3, 3) over seeds 0, 1
    assert row.interval.difference == pytest.approx(2.0)
    assert row.interval.low > 0 and row.verdict == "worse"
    text = format_markdown(by_geodesic)
    assert text.splitlines()[0].startswith("| group | runs | geodesic error | difference [95 % CI]")
    assert "Mean test geodesic error in degrees on 2 test images" in text
    data = report_json(by_geodesic)
    assert data["metric"] == "geodesic" and "mae" not in data["groups"][1]
    assert data["groups"][1]["geodesic"]["mean"] == pytest.approx(3.005)
    assert data["groups"][1]["difference_mean_geodesic"]["verdict"] == "worse"
    by_maev = compare(runs, baseline="head=euler", replicates=200, metric="maev")
    assert by_maev.rows[1].interval.difference == pytest.approx(2.0 - (4 / 3 + 0.0) / 2)


def test_compare_by_a_rotation_error_needs_the_csv_to_give_it():
    stems, true, errors, _ = parse_per_image(per_image_text("euler"), "e.csv")
    old = [Run("old", "old", {"head": '"x"'}, {}, stems, true, errors, None)]
    with pytest.raises(HeadposeError, match="--metric maev: the per-image CSV of old holds"):
        compare(old + runs_of("rotation"), baseline="old", metric="maev")


def test_an_unknown_metric_is_one_line_before_any_run_is_read(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--repo", str(tmp_path), "--metric", "rmse"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert error == "error: --metric rmse: expected one of mae, geodesic, maev\n"
    with pytest.raises(HeadposeError, match="--metric mean: expected one of"):
        compare(runs_of("euler"), metric="mean")


# --- The Python API -------------------------------------------------------------------------------


def test_a_pose_scores_itself_against_a_label():
    pose = headpose.Pose(90.0, 0.0, -30.0)
    error = pose.error_against((90.0, 30.0, 0.0))
    assert isinstance(error, headpose.PoseError)
    assert (error.yaw_deg, error.pitch_deg, error.roll_deg) == (0.0, 30.0, 30.0)
    assert error.mae_deg == pytest.approx(20.0)
    assert error.geodesic_deg == pytest.approx(0.0, abs=1e-9)
    assert error.maev_deg == pytest.approx(0.0, abs=1e-9)
    pure_yaw = headpose.Pose(10.0, 0.0, 0.0).error_against([0, 0, 0])
    assert (pure_yaw.geodesic_deg, pure_yaw.maev_deg) == pytest.approx((10.0, 20.0 / 3.0))
    for label in [(1.0, 2.0), (1.0, float("nan"), 0.0), "abc", ("1", "x", "2"), None]:
        with pytest.raises(HeadposeError, match="a label is 3 finite numbers"):
            pose.error_against(label)


def test_predict_with_labels_gives_each_pose_its_errors(tmp_path):
    model = headpose.load(write_checkpoint(tmp_path / "m.pt", "shufflenet_v2_x1_0"), device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    boxes = [(20.0, 20.0, 80.0, 90.0), (90.0, 30.0, 150.0, 100.0)]
    labels = [(10.0, -5.0, 2.0), (-40.0, 20.0, 0.0)]
    plain = model.predict(image, boxes)
    assert all(pose.error is None for pose in plain)
    scored = model.predict(image, boxes, labels=labels)
    for pose, label, unlabelled in zip(scored, labels, plain, strict=True):
        assert pose.yaw_deg == unlabelled.yaw_deg  # the same prediction
        predicted = [(pose.yaw_deg, pose.pitch_deg, pose.roll_deg)]
        geodesic, maev = rotation_errors_deg(predicted, [label])[0]
        assert pose.error.geodesic_deg == pytest.approx(geodesic)
        assert pose.error.maev_deg == pytest.approx(maev)
        assert pose.error.yaw_deg == pytest.approx(abs(pose.yaw_deg - label[0]))
    with pytest.raises(HeadposeError, match="labels: 1 given for 2 boxes; expected one per box"):
        model.predict(image, boxes, labels=labels[:1])
    with pytest.raises(HeadposeError, match="labels: given with boxes only"):
        model.predict(image, labels=labels)
