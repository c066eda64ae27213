"""FSA-Net's public ONNX files (``../shared/models/fsanet``, MIT) on the real AFLW2000: the
``fsanet`` crop protocol is FSA-Net's type-1 crop pixel for pixel (and none of this project's
crops is); ``headpose evaluate`` with the FSA-Net card scores what an independent
implementation of its preprocessing (cv2 + numpy here, ONNX Runtime called directly) scores,
on the visible crop and on FSA-Net's crop; ``fsanet`` by name works in ``headpose.load``,
``headpose evaluate`` and ``headpose predict``, the shared files standing in for the download
in the model cache. Skipped, with the reason, where ``../shared`` is absent."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest
import scipy.io
import yaml
from cli_fixtures import run_cli
from helpers import REPO_ROOT

import headpose
from headpose.crops.protocols import get_protocol
from headpose.errors import HeadposeError
from headpose.evaluation.test_sets import evaluation_samples
from headpose.inference.card import parse_card
from headpose.inference.published import (
    FSANET_CARD,
    PUBLISHED_MODELS,
    PublishedFile,
    PublishedModel,
    register_published,
)
from headpose.models.weights import cache_dir

FSANET_DIR = REPO_ROOT.parent / "shared" / "models" / "fsanet"
AFLW2000_DIR = REPO_ROOT.parent / "shared" / "data" / "AFLW2000"
FILES = ("fsanet-1x1-iter-688590.onnx", "fsanet-var-iter-688590.onnx")
SUBSET = 60  # images of AFLW2000 (sorted) the evaluations run on
TOLERANCE_DEG = 0.01


@pytest.fixture(scope="module")
def fsanet_dir() -> Path:
    if not all((FSANET_DIR / name).is_file() for name in FILES):
        pytest.skip(f"FSA-Net's public files not available: {FSANET_DIR} is missing")
    return FSANET_DIR


@pytest.fixture(scope="module")
def aflw_subset(tmp_path_factory) -> Path:
    """The first :data:`SUBSET` AFLW2000 pairs within +-99 degrees, copied to a folder."""
    if not AFLW2000_DIR.is_dir():
        pytest.skip(f"real dataset not available: {AFLW2000_DIR} is missing")
    folder = tmp_path_factory.mktemp("aflw_subset")
    taken = 0
    for image in sorted(AFLW2000_DIR.glob("*.jpg")):
        if max(abs(a) for a in _angles_deg(image.with_suffix(".mat"))) > 99:
            continue
        shutil.copy(image, folder / image.name)
        shutil.copy(image.with_suffix(".mat"), folder / image.with_suffix(".mat").name)
        taken += 1
        if taken == SUBSET:
            break
    return folder


@pytest.fixture
def fsanet_in_cache(fsanet_dir) -> Path:
    """The shared files where the first use of ``fsanet`` downloads them (the test's cache)."""
    folder = cache_dir() / "published" / "fsanet"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(fsanet_dir / name, folder / name)
    return folder


# --- An independent implementation of FSA-Net's preprocessing -----------------------------------


def _angles_deg(mat_path: Path) -> tuple[float, float, float]:
    pose = scipy.io.loadmat(str(mat_path))["Pose_Para"].ravel()
    pitch, yaw, roll = (math.degrees(float(v)) for v in pose[:3])
    return yaw, pitch, roll


def fsanet_crop(image: np.ndarray, pt2d: np.ndarray) -> np.ndarray:
    """FSA-Net's type-1 crop as its README describes it: positive points, int() box, 0.6 of
    width and height each side, int() again, clipped, sliced, cv2.resize to 64."""
    xs, ys = pt2d[0], pt2d[1]
    keep = (xs > 0) & (ys > 0)
    xs, ys = xs[keep], ys[keep]
    x_min, x_max, y_min, y_max = int(min(xs)), int(max(xs)), int(min(ys)), int(max(ys))
    w, h = x_max - x_min, y_max - y_min
    img_h, img_w = image.shape[:2]
    x_min = max(int(x_min - 0.6 * w), 0)
    x_max = min(int(x_max + 0.6 * w), img_w - 1)
    y_min = max(int(y_min - 0.6 * h), 0)
    y_max = min(int(y_max + 0.6 * h), img_h - 1)
    return cv2.resize(image[y_min:y_max, x_min:x_max], (64, 64))


def visible_crop(image: np.ndarray, pt2d: np.ndarray) -> np.ndarray:
    """This project's ``visible`` evaluation crop, written out: the non-negative points moved
    to 0-based pixels, margins 0.4 left/top/right and 0.12 bottom of the box (k = 0.2), edges
    rounded outwards, black outside the image, resized to 64 (area when shrinking)."""
    points = pt2d.T.astype(np.float64)
    points = points[(points >= 0).all(axis=1)] - 1.0
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    w, h = x1 - x0, y1 - y0
    left, top = math.floor(x0 - 0.4 * w), math.floor(y0 - 0.4 * h)
    right, bottom = math.ceil(x1 + 0.4 * w), math.ceil(y1 + 0.12 * h)
    canvas = np.zeros((bottom - top, right - left, 3), np.uint8)
    img_h, img_w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(right, img_w), min(bottom, img_h)
    canvas[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = image[sy0:sy1, sx0:sx1]
    shrinking = canvas.shape[0] > 64 or canvas.shape[1] > 64
    return cv2.resize(
        canvas, (64, 64), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def independent_predictions(folder: Path, files: list[Path], crop) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) yaw, pitch, roll degrees of every pair in ``folder``: BGR crops
    ``(x - 127.5) / 128`` fed one at a time to each file, the files' answers averaged."""
    sessions = [
        onnxruntime.InferenceSession(str(f), providers=["CPUExecutionProvider"]) for f in files
    ]
    predicted, true = [], []
    for image_path in sorted(folder.glob("*.jpg")):
        image = cv2.imread(str(image_path))
        pt2d = scipy.io.loadmat(str(image_path.with_suffix(".mat")))["pt2d"]
        face = crop(image, pt2d).astype(np.float32)
        batch = ((face - 127.5) / 128.0).transpose(2, 0, 1)[None]
        answers = [s.run(None, {s.get_inputs()[0].name: batch})[0][0] for s in sessions]
        predicted.append(np.mean(answers, axis=0))
        true.append(_angles_deg(image_path.with_suffix(".mat")))
    return np.asarray(predicted, np.float64), np.asarray(true, np.float64)


def printed_mae(output: str) -> np.ndarray:
    """The yaw, pitch, roll MAE of the ``all`` row of ``headpose evaluate``'s table."""
    row = re.search(r"^all\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", output, re.MULTILINE)
    assert row, output
    return np.asarray([float(v) for v in row.groups()])


# --- The crop ------------------------------------------------------------------------------------


def test_the_fsanet_protocol_is_fsanets_crop_pixel_for_pixel_and_no_other_protocol_is(aflw_subset):
    samples, _ = evaluation_samples(aflw_subset)
    protocol = get_protocol("fsanet")
    others_differ = {"hopenet": 0, "visible": 0}
    for sample in samples:
        image_rgb, labels = sample.read()
        mine = protocol.evaluation_crop(image_rgb, protocol.face_box(labels), 64)
        stem = Path(sample.entry).name
        pt2d = scipy.io.loadmat(str(aflw_subset / f"{stem}.mat"))["pt2d"]
        theirs = fsanet_crop(np.ascontiguousarray(image_rgb[:, :, ::-1]), pt2d)[:, :, ::-1]
        np.testing.assert_array_equal(mine, theirs, err_msg=stem)
        for name in others_differ:
            other = get_protocol(name)
            others_differ[name] += not np.array_equal(
                other.evaluation_crop(image_rgb, other.face_box(labels), 64), mine
            )
    assert all(count == len(samples) for count in others_differ.values()), others_differ


# --- headpose evaluate with the card against the independent implementation ------------------


@pytest.mark.parametrize(("protocol", "crop"), [("visible", visible_crop), ("fsanet", fsanet_crop)])
def test_evaluate_with_the_card_scores_what_an_independent_implementation_scores(
    fsanet_dir, aflw_subset, tmp_path, capsys, protocol, crop
):
    card = tmp_path / "fsanet.yaml"
    card.write_text(yaml.safe_dump(FSANET_CARD))
    model = fsanet_dir / FILES[0]
    assert run_cli(["evaluate", str(model), "--card", str(card), "--data", str(aflw_subset),
                    "--crop-protocol", protocol, "--workers", "1"]) == 0  # fmt: skip
    predicted, true = independent_predictions(aflw_subset, [model], crop)
    independent_mae = np.abs(predicted - true).mean(axis=0)
    np.testing.assert_allclose(printed_mae(capsys.readouterr().out), independent_mae, atol=0.015)
    # per image, through the API with the same card and crops
    loaded = headpose.load(model, card=card)
    samples, _ = evaluation_samples(aflw_subset)
    chosen = get_protocol(protocol)
    crops = []
    for sample in samples:
        image_rgb, labels = sample.read()
        crops.append(chosen.evaluation_crop(image_rgb, chosen.face_box(labels), 64))
    np.testing.assert_allclose(loaded.predict_crops(np.stack(crops)), predicted, atol=TOLERANCE_DEG)


# --- fsanet by name ----------------------------------------------------------------------------


def test_fsanet_by_name_loads_evaluates_and_predicts_averaged(
    fsanet_in_cache, aflw_subset, tmp_path, capsys
):
    model = headpose.load("fsanet")
    assert model.image_size == 64 and model.crop_protocol.name == "fsanet"
    assert "mean of 2" in model.runs_on
    files = [fsanet_in_cache / name for name in FILES]
    predicted, true = independent_predictions(aflw_subset, files, fsanet_crop)

    assert run_cli(["evaluate", "fsanet", "--data", str(aflw_subset), "--crop-protocol", "fsanet",
                    "--workers", "1"]) == 0  # fmt: skip
    np.testing.assert_allclose(
        printed_mae(capsys.readouterr().out), np.abs(predicted - true).mean(axis=0), atol=0.015
    )

    image = sorted(aflw_subset.glob("*.jpg"))[0]
    pt2d = scipy.io.loadmat(str(image.with_suffix(".mat")))["pt2d"]
    points = pt2d.T[(pt2d.T >= 0).all(axis=1)] - 1.0
    box = [float(v) for v in (*points.min(axis=0), *points.max(axis=0))]
    (pose,) = model.predict(str(image), boxes=[box])
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"file,x0,y0,x1,y1\n{image.name},{box[0]},{box[1]},{box[2]},{box[3]}\n")
    out = tmp_path / "out"
    assert run_cli(["predict", str(image), "--model", "fsanet", "--boxes", str(boxes),
                    "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "predictions.json").read_text())
    assert report["runtime"].endswith("mean of 2 models") and report["crop_protocol"] == "fsanet"
    (face,) = report["faces"]
    np.testing.assert_allclose(
        [face["yaw_deg"], face["pitch_deg"], face["roll_deg"]],
        [pose.yaw_deg, pose.pitch_deg, pose.roll_deg],
        atol=1e-6,
    )


def test_a_published_model_offline_without_a_cached_copy_is_one_line():
    card = parse_card(FSANET_CARD, "test card")
    url = "file:///nonexistent/published/model.onnx"
    register_published(
        PublishedModel("offline_test", (PublishedFile("m.onnx", url, "0" * 64),), card, "MIT", "t")
    )
    try:
        with pytest.raises(HeadposeError) as error:
            headpose.load("offline_test")
    finally:
        PUBLISHED_MODELS.unregister("offline_test")
    message = str(error.value)
    assert "\n" not in message and url in message and "by hand" in message


def test_fsanet_is_not_scored_beside_the_projects_protocols_by_default():
    from headpose.evaluation.evaluate import other_protocols

    assert other_protocols(get_protocol("hopenet")) == (get_protocol("visible"),)
    assert other_protocols(get_protocol("visible")) == (get_protocol("hopenet"),)
    assert get_protocol("fsanet") not in other_protocols(get_protocol("fsanet"))


def test_an_unknown_model_name_is_one_line_listing_the_published_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HeadposeError) as error:
        headpose.load("fsanett")
    message = str(error.value)
    assert "\n" not in message and "'fsanett'" in message and "fsanet" in message


def test_the_issues_command_runs_its_fixed_batch_without_a_traceback(
    fsanet_dir, aflw_subset, capsys
):
    """Issue 37's first try: the values given, no card (fed as RGB, as asked), batch fixed at 1."""
    model = fsanet_dir / FILES[0]
    assert run_cli(["evaluate", str(model), "--data", str(aflw_subset), "--mean", "0.5,0.5,0.5",
                    "--std", "0.50196,0.50196,0.50196", "--crop-protocol", "visible",
                    "--image-size", "64", "--workers", "1"]) == 0  # fmt: skip
    assert printed_mae(capsys.readouterr().out).shape == (3,)


def test_fsanet_predicts_through_the_detector_and_its_calibration(
    fsanet_in_cache, aflw_subset, yunet_model
):
    from headpose.app.detect import make_detector

    model = headpose.load("fsanet")
    detector = make_detector("yunet", str(yunet_model))
    image = sorted(aflw_subset.glob("*.jpg"))[0]
    poses = model.predict(str(image), detector=detector)
    yaw, pitch, roll = _angles_deg(image.with_suffix(".mat"))
    assert len(poses) >= 1
    nearest = min(poses, key=lambda pose: abs(pose.yaw_deg - yaw))
    assert abs(nearest.yaw_deg - yaw) < 25  # a real-face model through the detector's crop
