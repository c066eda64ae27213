"""Face detectors: the YuNet model download (cache, verification, offline fallback), YuNet on
real AFLW2000 photos (several faces, confidence threshold), its box calibration, and predict with
ONNX Runtime.

No test downloads anything: ``conftest.offline_model_cache`` points the cache at an empty folder
and the YuNet URL at a missing file; downloads are tested with local ``file://`` URLs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from cli_fixtures import run_cli
from model_fixtures import write_checkpoint

from headpose.app import detect
from headpose.app.detect import (
    IDENTITY_CALIBRATION,
    HaarFaceDetector,
    ModelUnavailable,
    YuNetFaceDetector,
    box_iou,
    fetch_model,
    fit_box_calibration,
    make_detector,
)
from headpose.crops.crop import landmark_box
from headpose.errors import HeadposeError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TWO_FACES = ("image00013", "image00039")


def read_rgb(aflw2000_dir: Path, name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(aflw2000_dir / f"{name}.jpg")), cv2.COLOR_BGR2RGB)


def truth_box(aflw2000_dir: Path, name: str) -> tuple[float, ...]:
    points = scipy.io.loadmat(aflw2000_dir / f"{name}.mat")["pt3d_68"][:2].T - 1.0
    return landmark_box(points)


# --- The model download --------------------------------------------------------------------------


def published(tmp_path: Path, data: bytes) -> tuple[str, str]:
    """A file served by a file:// URL: (url, sha256)."""
    source = tmp_path / "served" / "model.onnx"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    return source.as_uri(), hashlib.sha256(data).hexdigest()


def test_download_is_verified_cached_and_reused(tmp_path):
    url, sha256 = published(tmp_path, b"yunet weights" * 100)
    path = fetch_model(url, "model.onnx", sha256)
    assert path.parent == detect.cache_dir() and path.read_bytes() == b"yunet weights" * 100
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temporary left
    Path(url.removeprefix("file://")).unlink()  # the source is gone: the cached copy serves
    assert fetch_model(url, "model.onnx", sha256) == path


def test_a_download_with_the_wrong_hash_is_refused(tmp_path):
    url, _ = published(tmp_path, b"tampered weights")
    with pytest.raises(HeadposeError, match="refusing .*invalid hash value") as error:
        fetch_model(url, "model.onnx", "0" * 64)
    message = str(error.value)
    assert "\n" not in message and str(detect.cache_dir() / "model.onnx") in message
    assert not detect.cache_dir().exists() or not any(detect.cache_dir().iterdir())


def test_a_corrupt_cached_copy_is_replaced_or_reported(tmp_path):
    url, sha256 = published(tmp_path, b"good weights")
    cached = detect.cache_dir() / "model.onnx"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"bad weights!")  # same size, wrong hash
    assert fetch_model(url, "model.onnx", sha256).read_bytes() == b"good weights"
    cached.write_bytes(b"bad weights!")
    with pytest.raises(ModelUnavailable, match="copy there fails its SHA-256 check"):
        fetch_model("file:///nonexistent/model.onnx", "model.onnx", sha256)


def test_offline_without_a_cached_model_the_detector_is_unavailable():
    with pytest.raises(ModelUnavailable) as error:
        make_detector("yunet")
    message = str(error.value)
    assert "could not download file:///nonexistent/face_detection_yunet.onnx" in message
    assert f"by hand to {detect.cache_dir() / detect.YUNET_FILE}" in message
    assert "\n" not in message


def test_predict_offline_warns_once_and_falls_back_to_haar(tmp_path, aflw2000_dir, capsys):
    image = tmp_path / "face.jpg"
    cv2.imwrite(str(image), cv2.imread(str(aflw2000_dir / "image00013.jpg")))
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=32)
    out = tmp_path / "out"  # not the input's folder: predict refuses to write over its inputs
    code = run_cli(["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 0 and "Traceback" not in stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "using the haar detector instead" in warnings[0]
    report = json.loads((out / "predictions.json").read_text())
    assert report["detector"] == "haar" and len(report["faces"]) >= 1


def test_a_detector_model_that_is_not_a_model_is_one_clear_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not onnx")
    (tmp_path / "a.jpg").write_bytes(b"x")
    code = run_cli(
        ["predict", str(tmp_path / "a.jpg"), "--detector-model", str(bogus), "--out", "o"]
        + ["--checkpoint", str(write_checkpoint(tmp_path / "m.pt", "resnet18", image_size=32))]
    )
    stderr = capsys.readouterr().err
    assert code == 2 and "bogus.onnx is not a YuNet face detection model" in stderr
    assert "Traceback" not in stderr


# --- YuNet on real photos ------------------------------------------------------------------------


def test_yunet_finds_every_face_of_a_group_and_honours_the_threshold(aflw2000_dir, yunet_model):
    group = np.concatenate([read_rgb(aflw2000_dir, name) for name in TWO_FACES], axis=1)
    faces = YuNetFaceDetector(yunet_model).detect(group)
    truths = [truth_box(aflw2000_dir, TWO_FACES[0])]
    x_min, y_min, x_max, y_max = truth_box(aflw2000_dir, TWO_FACES[1])
    truths.append((x_min + 450, y_min, x_max + 450, y_max))
    for truth in truths:
        assert max(box_iou(face.box, truth) for face in faces) > 0.5
        assert all(len(face.landmarks_xy) == 5 for face in faces)
    strict = YuNetFaceDetector(yunet_model, min_score=max(face.score for face in faces) + 1e-3)
    assert strict.detect(group) == []


def test_yunet_boxes_and_landmarks_scale_back_from_a_shrunk_image(aflw2000_dir, yunet_model):
    image = read_rgb(aflw2000_dir, TWO_FACES[0])
    full = YuNetFaceDetector(yunet_model, max_side_px=1000).detect(image)[0]
    shrunk = YuNetFaceDetector(yunet_model, max_side_px=300).detect(image)[0]
    assert box_iou(full.box, shrunk.box) > 0.85
    assert np.abs(np.subtract(full.landmarks_xy, shrunk.landmarks_xy)).max() < 10


@pytest.mark.parametrize("height_width", [(50, 10000), (1, 640), (5, 300), (32, 100), (17, 7)])
def test_yunet_on_an_image_a_few_pixels_high_finds_nothing_every_time(
    aflw2000_dir, yunet_model, height_width
):
    """On an input 32 px high or less YuNet returned boxes of memory it never wrote, changing
    from call to call (the 10000 x 50 panorama of test_paths_and_options, shrunk to 640 x 3,
    sometimes held a usable "face": predict's exit 0 instead of 1)."""
    detector = YuNetFaceDetector(yunet_model)
    face = read_rgb(aflw2000_dir, TWO_FACES[0])
    flat = np.full((*height_width, 3), 128, np.uint8)
    for _ in range(20):  # between other sizes, as predict runs a folder
        assert len(detector.detect(face)) == 1
        assert detector.detect(flat) == []


def test_stored_yunet_calibration_matches_a_fresh_fit_on_real_aflw2000(aflw2000_dir, yunet_model):
    detector = YuNetFaceDetector(yunet_model)
    faces, truths = [], []
    for image_path in sorted(aflw2000_dir.glob("image*.jpg"))[1::25]:  # 80 odd-numbered images
        truth = truth_box(aflw2000_dir, image_path.stem)
        found = detector.detect(cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB))
        best = max(found, key=lambda face: box_iou(face.box, truth), default=None)
        if best is not None and box_iou(best.box, truth) >= 0.3:
            faces.append(best)
            truths.append(truth)
    assert len(faces) >= 75

    def median_iou(calibration) -> float:
        boxes = [calibration.landmark_box(face) for face in faces]
        return float(np.median([box_iou(b, t) for b, t in zip(boxes, truths, strict=True)]))

    fresh = fit_box_calibration(faces, truths, landmark_count=5)
    stored = median_iou(detector.calibration)
    assert stored > median_iou(IDENTITY_CALIBRATION) + 0.1  # calibrating helps a lot
    assert stored > median_iou(fresh) - 0.03  # and the stored map is as good as a new fit


def test_haar_insets_are_a_one_row_calibration():
    face = detect.FaceBox(0, 0, 100, 200)
    assert HaarFaceDetector.calibration.landmark_box(face) == pytest.approx((9, 46, 91, 208))


# --- predict with ONNX Runtime -------------------------------------------------------------------


@pytest.mark.slow
def test_predict_with_onnx_runtime_matches_torch(tmp_path, aflw2000_dir, yunet_model):
    group = np.concatenate([read_rgb(aflw2000_dir, name) for name in TWO_FACES], axis=1)
    image = tmp_path / "group.jpg"
    cv2.imwrite(str(image), cv2.cvtColor(group, cv2.COLOR_RGB2BGR))
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=32)
    angles = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        args = ["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(out)]
        assert run_cli(args + ["--runtime", runtime, "--detector-model", str(yunet_model)]) == 0
        report = json.loads((out / "predictions.json").read_text())
        assert report["runtime"].startswith("onnxruntime" if runtime == "onnx" else "cpu")
        angles[runtime] = [[f["yaw_deg"], f["pitch_deg"], f["roll_deg"]] for f in report["faces"]]
    assert len(angles["torch"]) == 2  # both faces of the group, one model batch
    np.testing.assert_allclose(angles["onnx"], angles["torch"], atol=0.05)
