"""Prediction: detector, box mapping, axis drawing and the ``headpose predict`` command.

Real AFLW2000 images (downscaled to 225 px to keep the Haar cascades fast) are the inputs; the
model is a small untrained checkpoint, so only behaviour is checked here, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from cli_fixtures import run_cli
from model_fixtures import write_checkpoint

from headpose.app.api import HeadPoseModel, protocol_landmark_box
from headpose.app.detect import (
    FaceBox,
    HaarFaceDetector,
    box_iou,
    non_max_suppression,
    read_box_file,
)
from headpose.app.draw import axis_endpoints
from headpose.app.predict import FacePosePredictor, video_frames
from headpose.crops.crop import PREDICT_K, landmark_box
from headpose.crops.protocols import get_protocol
from headpose.errors import HeadposeError
from headpose.geometry import pose_angles_deg
from headpose.inference.loading import open_model

IMAGE_SIZE = 64
SCALE = 0.5  # AFLW2000 images are 450 px; tests use 225 px copies
FRONTAL = ["image00013", "image00014", "image00019", "image00039"]  # near-frontal, Haar finds them


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    return write_checkpoint(folder / "model.pt", "resnet18", image_size=IMAGE_SIZE)


def small_image(aflw2000_dir: Path, name: str) -> np.ndarray:
    """An AFLW2000 image at half size, RGB."""
    image = cv2.cvtColor(cv2.imread(str(aflw2000_dir / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)


def landmark_box_small(aflw2000_dir: Path, name: str) -> tuple[float, ...]:
    """The 68-landmark box (pt3d_68, 1-based -> pixels) in the half-size image."""
    points = scipy.io.loadmat(aflw2000_dir / f"{name}.mat")["pt3d_68"][:2].T - 1.0
    return tuple(value * SCALE for value in landmark_box(points))


def write_small(folder: Path, aflw2000_dir: Path, name: str) -> Path:
    path = folder / f"{name}.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(small_image(aflw2000_dir, name), cv2.COLOR_RGB2BGR))
    return path


# --- Drawing ------------------------------------------------------------------------------------


def test_axes_of_a_frontal_pose_point_right_and_up():
    tips = axis_endpoints(0, 0, 0, (100, 100), 50)
    np.testing.assert_allclose(tips, [[150, 100], [100, 50], [100, 100]], atol=1e-9)


def test_axes_follow_yaw_pitch_and_roll_directions():
    # positive yaw turns the face (its z axis) toward the image's left
    assert axis_endpoints(40, 0, 0, (0, 0), 1)[2][0] < -0.5
    # positive pitch tilts the z axis up in the image (y decreases)
    assert axis_endpoints(0, 30, 0, (0, 0), 1)[2][1] < -0.4
    # roll turns the x axis in the image plane without moving z
    tips = axis_endpoints(0, 0, 30, (0, 0), 1)
    assert abs(tips[0][1]) > 0.4 and np.allclose(tips[2], 0)


def test_drawn_z_axis_points_where_the_nose_points_on_real_aflw2000(aflw2000_dir):
    checked = 0
    for mat_path in sorted(aflw2000_dir.glob("*.mat"))[:120]:
        mat = scipy.io.loadmat(mat_path)
        yaw, pitch, roll = pose_angles_deg(mat["Pose_Para"][0])
        if not 35 <= abs(yaw) <= 90 or max(abs(pitch), abs(roll)) > 40:
            continue
        landmarks = mat["pt3d_68"][:2].T
        box = landmark_box(landmarks)
        center_x = (box[0] + box[2]) / 2
        z_tip = axis_endpoints(yaw, pitch, roll, (0, 0), 1)[2]
        nose_offset = landmarks[30, 0] - center_x  # landmark 31 (1-based): the nose tip
        assert np.sign(z_tip[0]) == np.sign(nose_offset), mat_path.name
        checked += 1
    assert checked >= 10


# --- Detection and crops ------------------------------------------------------------------------


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = [FaceBox(0, 0, 10, 10, 1.0), FaceBox(1, 1, 11, 11, 5.0), FaceBox(50, 50, 60, 60, 0.5)]
    kept = non_max_suppression(boxes, 0.3)
    assert [face.score for face in kept] == [5.0, 0.5]


def test_haar_boxes_map_onto_the_landmark_box_and_training_crop(aflw2000_dir):
    detector = HaarFaceDetector()
    for name in FRONTAL:
        truth = landmark_box_small(aflw2000_dir, name)
        faces = detector.detect(small_image(aflw2000_dir, name))
        best = max(faces, key=lambda face: box_iou(face.box, truth))
        estimate = detector.calibration.landmark_box(best)
        assert box_iou(estimate, truth) > 0.6, name
        # the crop fed to the model overlaps the training-style crop of the true landmarks, in
        # either protocol (hopenet frames the stored 1-based points: the box moved by 1 pixel)
        for name, shift in (("visible", 0.0), ("hopenet", 1.0)):
            protocol = get_protocol(name)
            estimate_in = protocol_landmark_box(best, detector.calibration, protocol)
            assert estimate_in == tuple(value + shift for value in estimate)
            crop = protocol.loosen_box(estimate_in, PREDICT_K, "train")
            target = protocol.loosen_box(tuple(v + shift for v in truth), PREDICT_K, "train")
            assert box_iou(crop, target) > 0.6
        # without the insets the raw Haar box would match the landmarks worse
        assert box_iou(best.box, truth) < box_iou(estimate, truth), name


def test_box_file_csv_and_json(tmp_path):
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("file,frame,x0,y0,x1,y1\na.jpg,,1,2,30,40\nclip.mp4,3,5,5,20,20\n")
    table = read_box_file(csv_path)
    assert table[("a.jpg", 0)][0].box == (1.0, 2.0, 30.0, 40.0)
    assert table[("clip.mp4", 3)][0].box == (5.0, 5.0, 20.0, 20.0)
    json_path = tmp_path / "boxes.json"
    json_path.write_text(json.dumps([{"file": "a.jpg", "x0": 1, "y0": 2, "x1": 3, "y1": 4}]))
    assert read_box_file(json_path)[("a.jpg", 0)][0].box == (1.0, 2.0, 3.0, 4.0)
    csv_path.write_text("file,x0,y0,x1,y1\na.jpg,1,2,abc,4\n")
    with pytest.raises(HeadposeError, match="row 1"):
        read_box_file(csv_path)


# --- The command --------------------------------------------------------------------------------


def make_video(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (width, height))
    assert writer.isOpened(), "this OpenCV build cannot write mp4v"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_predict_images_folder_video_and_bad_inputs(
    tmp_path, aflw2000_dir, yunet_model, checkpoint, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    face_paths = [write_small(inputs, aflw2000_dir, name) for name in FRONTAL[:2]]
    background = small_image(aflw2000_dir, FRONTAL[0])[:40, :40]  # a corner: no face
    cv2.imwrite(str(inputs / "background.jpg"), cv2.resize(background, (160, 160)))
    (inputs / "notes.jpg").write_text("not an image")
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(b"\x00" * 2048)
    frames = [small_image(aflw2000_dir, name) for name in FRONTAL[:3]]
    video = make_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "out"

    code = run_cli(
        [
            "predict",
            str(inputs),
            str(video),
            str(broken_video),
            "--detector-model",
            str(yunet_model),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
        ]
    )

    assert code == 1  # bad files and the faceless image fail the run after the rest went through
    captured = capsys.readouterr()
    stderr = captured.err
    assert "Traceback" not in stderr
    assert "notes.jpg: not a readable image" in stderr
    assert "broken.mp4: not a readable video" in stderr
    assert "background.jpg: no face found" in stderr
    report = json.loads((out / "predictions.json").read_text())
    faces = report["faces"]
    assert report["crop_protocol"] == "visible"  # the checkpoint's: saved before protocols
    for path in face_paths:
        found = [face for face in faces if face["file"] == str(path)]
        truth = landmark_box_small(aflw2000_dir, path.stem)
        assert any(box_iou((f["x0"], f["y0"], f["x1"], f["y1"]), truth) > 0.3 for f in found)
        annotated = cv2.imread(str(out / path.name))
        assert annotated.shape == cv2.imread(str(path)).shape
    video_frames_found = {face["frame"] for face in faces if face["file"] == str(video)}
    assert video_frames_found == {0, 1, 2}
    assert all(np.isfinite([f["yaw_deg"], f["pitch_deg"], f["roll_deg"]]).all() for f in faces)
    csv_rows = (out / "predictions.csv").read_text().strip().splitlines()
    assert len(csv_rows) == len(faces) + 1
    annotated_video = cv2.VideoCapture(str(out / "clip.mp4"))
    assert len(list(video_frames(annotated_video))) == 3
    assert report["detector"] == "yunet"
    timings = report["timings"][str(video)]
    assert timings["frames"] == 3 and timings["frames_per_s"] > 0
    stages = {"decode", "detect", "crop", "model", "draw", "write"}
    assert set(timings["median_ms"]) == stages
    assert all(len(ms) == 3 and min(ms) >= 0 for ms in timings["per_frame_ms"].values())
    assert "clip.mp4: 3 frames" in captured.out


def test_predict_with_box_file_uses_exactly_those_boxes(tmp_path, aflw2000_dir, checkpoint):
    image = write_small(tmp_path, aflw2000_dir, FRONTAL[0])
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"file,x0,y0,x1,y1\n{image.name},60,60,160,170\n")
    assert (
        run_cli(
            [
                "predict",
                str(image),
                "--checkpoint",
                str(checkpoint),
                "--boxes",
                str(boxes),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    faces = json.loads((tmp_path / "out" / "predictions.json").read_text())["faces"]
    assert [(f["x0"], f["y0"], f["x1"], f["y1"]) for f in faces] == [(60, 60, 160, 170)]


def test_missing_checkpoint_is_one_clear_message(tmp_path, aflw2000_dir, capsys):
    image = write_small(tmp_path, aflw2000_dir, FRONTAL[0])
    code = run_cli(
        [
            "predict",
            str(image),
            "--checkpoint",
            str(tmp_path / "nope.pt"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    stderr = capsys.readouterr().err
    assert code == 2 and "nope.pt does not exist" in stderr and "Traceback" not in stderr


def test_batching_the_faces_of_a_frame_does_not_change_results(aflw2000_dir, checkpoint):
    loaded = open_model(checkpoint, "torch", "cpu")
    frame = np.concatenate([small_image(aflw2000_dir, name) for name in FRONTAL], axis=1)
    boxes = {("group", 0): [FaceBox(60 + 225 * i, 60, 160 + 225 * i, 170) for i in range(4)]}

    def angles(batch_size: int) -> np.ndarray:
        predictor = FacePosePredictor(HeadPoseModel(loaded, batch_size), boxes=boxes)
        runs = list(predictor.run(iter([(0, frame.copy())]), Path("group")))
        assert set(runs[0][2]) == {"detect", "crop", "model", "draw"}
        return np.array([[r.yaw_deg, r.pitch_deg, r.roll_deg] for r in runs[0][1]])

    one_by_one, batched = angles(1), angles(32)
    assert one_by_one.shape == (4, 3)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-3)
    assert np.ptp(batched[:, 0]) > 0  # different faces give different angles


def test_an_image_without_a_face_alone_fails_the_run(tmp_path, aflw2000_dir, checkpoint, capsys):
    corner = small_image(aflw2000_dir, FRONTAL[0])[:40, :40]
    cv2.imwrite(str(tmp_path / "wall.jpg"), cv2.resize(corner, (160, 160)))
    code = run_cli(
        [
            "predict",
            str(tmp_path / "wall.jpg"),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1
    assert "wall.jpg: no face found" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "predictions.json").read_text())["faces"] == []


@pytest.mark.parametrize("as_folder", [True, False])
def test_predict_never_writes_over_its_inputs(tmp_path, checkpoint, capsys, as_folder):
    """``predict photos --out photos`` (or one photo of that folder) used to replace the JPEGs
    with their annotated copies: it is refused before any work, the photos untouched."""
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.full((120, 120, 3), 90, np.uint8)
    cv2.imwrite(str(photos / "a.jpg"), image)
    before = (photos / "a.jpg").read_bytes()
    target = str(photos) if as_folder else str(photos / "a.jpg")
    code = run_cli(["predict", target, "--checkpoint", str(checkpoint), "--out", str(photos)])
    assert code == 2
    err = capsys.readouterr().err
    assert "holds the input" in err and "choose another output folder" in err
    assert len(err.strip().splitlines()) == 1
    assert (photos / "a.jpg").read_bytes() == before
    assert sorted(path.name for path in photos.iterdir()) == ["a.jpg"]


@pytest.mark.parametrize(("detector", "score"), [("yunet", "5"), ("yunet", "-0.1"), ("haar", "-1")])
def test_min_score_outside_the_detectors_range_is_refused(
    tmp_path, checkpoint, capsys, detector, score
):
    code = run_cli(
        ["predict", str(tmp_path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
         "--detector", detector, "--min-score", score]
    )  # fmt: skip
    assert code == 2
    assert f"--min-score {float(score):g}: the {detector} detector needs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_camera_index_is_an_input_not_a_missing_file(tmp_path, checkpoint, capsys):
    """``headpose predict 0`` (the README's camera form) opens camera 0; on a machine without
    one it says so, instead of "no such file or folder"."""
    code = run_cli(
        ["predict", "7", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
         "--detector", "haar", "--max-frames", "2"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "no such file or folder" not in err
    assert code == 1 and "7: not a readable video or camera" in err
