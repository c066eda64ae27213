"""Face detectors on the real AFLW2000: found rate, crop fit, ms per stage, end-to-end video fps.

Usage (from the repository root)::

    python scripts/benchmark_detectors.py --model deploy/model_int8.onnx \
        --detector-model ../shared/models/face_detection_yunet.onnx [--step 2] [--fit]

For every detector (YuNet and Haar side by side in one run) and every ``--step``-th AFLW2000 image
it runs :class:`headpose.app.predict.FacePosePredictor` (the code of ``headpose predict``) and
reports:

* found: the share of images where a detection matches the annotated face (its box overlaps the
  box of the 68 ``pt3d_68`` landmarks with IoU >= 0.3 and its centre lies inside that box);
* crop fit: for the found faces, the IoU of predict's model crop with (a) the crop training
  places around the 68-landmark box (k = 0.3, train margins: what predict aims at) and (b) the
  evaluation crop of ``headpose evaluate`` (``pt2d`` landmarks, k = 0.2, eval margins), as
  percentiles; "before" rows use the raw detector box as the landmark box;
* the model's MAE on the found faces among the 1969 protocol images (every |angle| <= 99): the
  model as ``headpose predict`` frames a face from a detector's box, against the labels;
* milliseconds per image of each stage (detect, crop, model, draw), medians;
* a 640x480 video of ``--video-frames`` AFLW2000 photos (one face per frame), run end to end
  (decode, detect, crop, model, draw, encode) through ``predict_files``: frames per second.

``--fit`` also fits YuNet's box calibration (box + 5 landmarks -> 68-landmark box) on the
matched faces of the even-numbered images, reports the crop fit on the odd-numbered ones
(held out) and prints the weights to store in ``YuNetFaceDetector.calibration``.
Timings on a shared machine vary: compare the detectors within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from headpose.app.api import load, protocol_landmark_box  # noqa: E402
from headpose.app.detect import (  # noqa: E402
    IDENTITY_CALIBRATION,
    BoxCalibration,
    FaceBox,
    box_iou,
    fit_box_calibration,
    make_detector,
)
from headpose.app.predict import STAGES, FacePosePredictor, predict_files  # noqa: E402
from headpose.crops.crop import EVAL_K, PREDICT_K, Box, landmark_box  # noqa: E402
from headpose.crops.protocols import DEFAULT_PROTOCOL  # noqa: E402
from headpose.datasets.registry import resolve  # noqa: E402

DEFAULT_AFLW2000 = REPO_ROOT.parent / "shared" / "data" / "AFLW2000"
FOUND_IOU = 0.3
PERCENTILES = (5, 25, 50, 75, 95)
VIDEO_SIZE = (640, 480)
AFLW2000_TEST_MAX_ANGLE_DEG = 99  # the 1969-image AFLW2000 protocol
ANGLES = ("yaw", "pitch", "roll")


class RecordingDetector:
    """A detector that keeps its last detections, so the benchmark sees the landmarks too."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.name = detector.name
        self.calibration = detector.calibration
        self.last: list[FaceBox] = []

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        self.last = self.detector.detect(image_rgb)
        return self.last


def truth_boxes(stem: Path) -> tuple[Box, Box]:
    """(68-landmark box from pt3d_68 in pixel coordinates, evaluation crop box exactly as the
    published protocol builds it)."""
    labels = resolve(stem.as_posix()).header()
    points = labels.landmarks_3d[:, :2] - 1.0
    protocol = DEFAULT_PROTOCOL  # the published one
    evaluation_crop = protocol.loosen_box(protocol.face_box(labels), EVAL_K, "eval")
    return landmark_box(points), evaluation_crop


def matched_face(faces: list[FaceBox], truth: Box) -> FaceBox | None:
    """The detection of the annotated face (see the module docstring), or None."""
    best = max(faces, key=lambda face: box_iou(face.box, truth), default=None)
    if best is None or box_iou(best.box, truth) < FOUND_IOU:
        return None
    center_x, center_y = (best.x_min + best.x_max) / 2, (best.y_min + best.y_max) / 2
    inside = truth[0] <= center_x <= truth[2] and truth[1] <= center_y <= truth[3]
    return best if inside else None


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    points = np.percentile(values, PERCENTILES)
    summary = {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, points, strict=True)}
    return {**summary, "mean": round(float(np.mean(values)), 3)}


def crop_fit(
    matches: list[tuple[FaceBox, Box, Box, Path]], calibration: BoxCalibration
) -> dict[str, dict[str, float]]:
    """IoU percentiles of predict's crop against the training-style and the evaluation crop."""
    target, evaluation, ceiling = [], [], []
    for face, truth, evaluation_crop, _ in matches:
        protocol = DEFAULT_PROTOCOL  # the published one
        landmarks = protocol_landmark_box(face, calibration, protocol)
        crop = protocol.loosen_box(landmarks, PREDICT_K, "train")
        framed = protocol.from_pixel_coordinates(truth)
        train_crop = protocol.loosen_box(framed, PREDICT_K, "train")
        target.append(box_iou(crop, train_crop))
        evaluation.append(box_iou(crop, evaluation_crop))
        ceiling.append(box_iou(train_crop, evaluation_crop))
    return {
        "vs_train_crop": percentiles(target),
        "vs_eval_crop": percentiles(evaluation),
        "train_crop_vs_eval_crop": percentiles(ceiling),  # what a perfect detector would reach
    }


def run_images(predictor: FacePosePredictor, stems: list[Path]) -> dict:
    """Found rate, stage milliseconds, the MAE on found protocol faces and the matched faces of
    one detector over the images."""
    recorder = predictor.detector
    stage_ms: dict[str, list[float]] = {stage: [] for stage in STAGES}
    matches: list[tuple[FaceBox, Box, Box, Path]] = []
    found_by_index: list[bool] = []
    errors: list[np.ndarray] = []
    for stem in stems:
        image = cv2.cvtColor(cv2.imread(str(stem.with_suffix(".jpg"))), cv2.COLOR_BGR2RGB)
        ((_, results, timings),) = predictor.run(iter([(0, image)]), stem)  # one frame
        for stage in STAGES:
            stage_ms[stage].append(timings[stage])
        truth, evaluation_crop = truth_boxes(stem)
        face = matched_face(recorder.last, truth)
        found_by_index.append(face is not None)
        if face is None:
            continue
        matches.append((face, truth, evaluation_crop, stem))
        true_deg = np.asarray(resolve(stem.as_posix()).header().angles_deg)
        predicted = [r for r in results if (r.x0, r.y0, r.x1, r.y1) == face.box]
        if predicted and np.all(np.abs(true_deg) <= AFLW2000_TEST_MAX_ANGLE_DEG):
            result = predicted[0]
            angles = np.array([result.yaw_deg, result.pitch_deg, result.roll_deg])
            errors.append(np.abs(angles - true_deg))
    table = np.asarray(errors).reshape(-1, 3)
    mae = {name: round(float(v), 3) for name, v in zip(ANGLES, table.mean(axis=0), strict=True)}
    return {
        "images": len(stems),
        "found": int(sum(found_by_index)),
        "found_share": round(sum(found_by_index) / len(stems), 4),
        "mae_found_protocol_faces": {
            **mae,
            "mean": round(float(table.mean()), 3),
            "count": len(table),
        },  # fmt: skip
        "median_ms": {stage: round(float(np.median(ms)), 2) for stage, ms in stage_ms.items()},
        "matches": matches,
    }


def make_video(stems: list[Path], path: Path, fps: float = 30.0) -> Path:
    """A 640x480 mp4v video: each frame one AFLW2000 photo (480x480) centred on grey."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, VIDEO_SIZE)
    width, height = VIDEO_SIZE
    for stem in stems:
        frame = np.full((height, width, 3), 128, np.uint8)
        photo = cv2.resize(cv2.imread(str(stem.with_suffix(".jpg"))), (height, height))
        left = (width - height) // 2
        frame[:, left : left + height] = photo
        writer.write(frame)
    writer.release()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint (.pt) or exported .onnx")
    parser.add_argument("--detector-model", help="local YuNet .onnx (default: cached download)")
    parser.add_argument("--aflw2000", default=str(DEFAULT_AFLW2000), help="AFLW2000 folder")
    parser.add_argument("--step", type=int, default=1, help="use every N-th image")
    parser.add_argument("--detectors", nargs="+", default=["yunet", "haar"])
    parser.add_argument("--video-frames", type=int, default=300, help="0: no video run")
    parser.add_argument("--fit", action="store_true", help="fit YuNet's calibration (see above)")
    parser.add_argument("--out", help="write the report as JSON")
    args = parser.parse_args()

    folder = Path(args.aflw2000)
    stems = sorted(path.with_suffix("") for path in folder.glob("image*.jpg"))
    if not stems:
        raise SystemExit(f"error: no AFLW2000 images in {folder}")
    stems = stems[:: args.step]
    model = load(args.model, device="cpu")
    report: dict = {
        "model": args.model,
        "runtime": model.runs_on,
        "image_size": model.image_size,
        "cpu_threads": os.cpu_count(),
        "opencv_threads": cv2.getNumThreads(),
        "detectors": {},
    }
    for name in args.detectors:
        detector = make_detector(name, args.detector_model if name == "yunet" else None)
        recorder = RecordingDetector(detector)
        predictor = FacePosePredictor(model, recorder)
        result = run_images(predictor, stems)
        matches = result.pop("matches")
        result["crop_fit_before"] = crop_fit(matches, IDENTITY_CALIBRATION)
        result["crop_fit_after"] = crop_fit(matches, detector.calibration)
        if args.fit and name == "yunet":
            even = [match for match in matches if int(match[3].name[-5:]) % 2 == 0]
            odd = [match for match in matches if int(match[3].name[-5:]) % 2 == 1]
            for landmark_count in (0, 5):
                fitted = fit_box_calibration(
                    [m[0] for m in even], [m[1] for m in even], landmark_count
                )
                result[f"fit_{landmark_count}_landmarks_held_out"] = crop_fit(odd, fitted)
                result[f"fit_{landmark_count}_landmarks_weights"] = fitted.weights
        report["detectors"][name] = result
        if args.video_frames:
            with tempfile.TemporaryDirectory() as work:
                video = make_video(
                    stems[: args.video_frames] if len(stems) >= args.video_frames else stems,
                    Path(work) / "aflw2000_640x480.mp4",
                )
                _, _, timings = predict_files(predictor, [video], Path(work) / "out")
            summary = timings[str(video)]
            del summary["per_frame_ms"]
            result["video_640x480"] = summary
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
