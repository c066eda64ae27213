"""Prediction on images, folders and videos: detect faces, crop, predict, draw, report.

``headpose predict PATH... --checkpoint CKPT --out DIR`` takes image files, folders of images
(not recursive) and video files. For every face it writes one result row (file, frame, box, yaw,
pitch, roll in degrees) to ``DIR/predictions.json`` and ``DIR/predictions.csv``, and an annotated
copy of each input (``DIR/<name>.jpg`` for images, ``DIR/<stem>.mp4`` for videos) with the face
box and the three head axes (:mod:`headpose.app.draw`).

From detector box to model crop. The model is trained on HopeNet's loose crops of the 68-landmark
box (:mod:`headpose.data.crop`). A detector box is first mapped to the landmark box it stands
for with the detector's measured ``landmark_insets``
(:func:`headpose.app.detect.landmark_box_estimate`), then
loosened like a training crop at the middle of the training range (k = 0.3, train margins), so a
face arrives at the network framed as the training crops framed it on average. Boxes read from a
``--boxes`` file are taken as tight landmark-style face boxes (no insets).

Problems with single inputs (no face found, a file that is not an image or video, an unreadable
video) are reported on stderr and in the JSON and do not stop the batch: every other file still
goes through, and the command then exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from headpose.app.detect import (
    DETECTORS,
    BoxTable,
    FaceBox,
    boxes_for,
    landmark_box_estimate,
    make_detector,
    read_box_file,
)
from headpose.app.draw import draw_pose
from headpose.data.crop import TRAIN_K_RANGE, Box, crop_resized, loosen_box
from headpose.data.pipeline import preprocess
from headpose.deploy.runtime import AngleFunction, torch_angle_function
from headpose.errors import HeadposeError
from headpose.io.files import atomic_path, write_csv, write_json
from headpose.io.formats import decode_rgb, write_jpeg
from headpose.models.network import load_angles_model, pick_device

DEFAULT_CHECKPOINT = Path("models/model.pt")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
CROP_K = sum(TRAIN_K_RANGE) / 2  # the middle of the training crops' looseness
RESULT_COLUMNS = (
    "file", "frame", "x0", "y0", "x1", "y1", "score", "yaw_deg", "pitch_deg", "roll_deg",
)  # fmt: skip


@dataclass(frozen=True)
class FaceResult:
    """One predicted face: where it is and its pose in degrees."""

    file: str
    frame: int
    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float


def model_crop_box(face: FaceBox, landmark_insets: tuple[float, float, float, float]) -> Box:
    """The region to feed the model for a detected face (see the module docstring)."""
    return loosen_box(landmark_box_estimate(face, landmark_insets), CROP_K, "train")


class FacePosePredictor:
    """Finds faces in RGB frames and predicts their poses, batching faces across frames.

    ``boxes`` (a table from :func:`headpose.app.detect.read_box_file`) replaces the detector.
    """

    def __init__(
        self,
        predict_angles: AngleFunction,
        image_size: int,
        detector_name: str = "haar",
        boxes: BoxTable | None = None,
        batch_size: int = 32,
    ) -> None:
        self.predict_angles = predict_angles
        self.image_size = image_size
        self.boxes = boxes
        self.detector = None if boxes is not None else make_detector(detector_name)
        self.batch_size = batch_size

    def faces(self, image_rgb: np.ndarray, path: Path, frame: int) -> list[FaceBox]:
        if self.boxes is not None:
            return boxes_for(self.boxes, path, frame)
        return self.detector.detect(image_rgb)

    def _insets(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, 0.0, 0.0) if self.detector is None else self.detector.landmark_insets

    def run(
        self, frames: Iterator[tuple[int, np.ndarray]], path: Path
    ) -> Iterator[tuple[np.ndarray, list[FaceResult]]]:
        """For each (index, RGB frame): yield (the frame annotated in place, its face results).

        Frames are buffered until ``batch_size`` faces are waiting, then predicted in one batch.
        """
        pending: list[tuple[int, np.ndarray, list[FaceBox]]] = []
        crops: list[torch.Tensor] = []
        for index, image in frames:
            faces = self.faces(image, path, index)
            pending.append((index, image, faces))
            crops.extend(
                preprocess(
                    crop_resized(image, model_crop_box(face, self._insets()), self.image_size)
                )
                for face in faces
            )
            if len(crops) >= self.batch_size:
                yield from self._flush(pending, crops, path)
                pending, crops = [], []
        yield from self._flush(pending, crops, path)

    def _flush(
        self, pending: list, crops: list[torch.Tensor], path: Path
    ) -> Iterator[tuple[np.ndarray, list[FaceResult]]]:
        angles = self.predict_angles(torch.stack(crops)) if crops else np.zeros((0, 3))
        row = 0
        for index, image, faces in pending:
            results = []
            for face in faces:
                yaw, pitch, roll = (float(value) for value in angles[row])
                row += 1
                draw_pose(image, face.box, yaw, pitch, roll)
                results.append(
                    FaceResult(str(path), index, *face.box, face.score, yaw, pitch, roll)
                )
            yield image, results


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Expand folders into their image and video files; return (files, problems)."""
    files: list[Path] = []
    problems: list[str] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                problems.append(f"{path}: folder holds no image or video files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def video_frames(capture: cv2.VideoCapture) -> Iterator[tuple[int, np.ndarray]]:
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1


def open_video(path: Path) -> cv2.VideoCapture | None:
    """An opened capture whose first frame decodes (rewound), or None."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened() or not capture.read()[0]:
        capture.release()
        return None
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return capture


def predict_video(
    predictor: FacePosePredictor, path: Path, capture: cv2.VideoCapture, out_dir: Path
) -> list[FaceResult]:
    """Annotate every frame of a video into ``out_dir/<stem>.mp4`` (mp4v); return its results."""
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    results: list[FaceResult] = []
    target = out_dir / f"{path.stem}.mp4"
    with atomic_path(target) as temp:
        writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise HeadposeError(f"cannot write video {target} with the mp4v codec")
        frames = tqdm(video_frames(capture), total=total, desc=path.name, unit="frame")
        for image, frame_results in predictor.run(frames, path):
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            results.extend(frame_results)
        writer.release()
    capture.release()
    return results


def output_name(path: Path, used: set[str]) -> str:
    """A unique output file name for an input image (``name.jpg``, then ``name_2.jpg`` ...)."""
    name, number = f"{path.stem}.jpg", 1
    while name in used:
        number += 1
        name = f"{path.stem}_{number}.jpg"
    used.add(name)
    return name


def predict_files(
    predictor: FacePosePredictor, files: list[Path], out_dir: Path
) -> tuple[list[FaceResult], list[str]]:
    """Run every file; return (face results, problems). A bad file never stops the rest."""
    results: list[FaceResult] = []
    errors: list[str] = []
    used_names: set[str] = set()
    images = [path for path in files if path.suffix.lower() not in VIDEO_SUFFIXES]
    videos = [path for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
    for path in tqdm(images, desc="images", unit="image", disable=len(images) < 2):
        image = decode_rgb(path)
        if image is None:
            errors.append(f"{path}: not a readable image or video")
            continue
        for annotated, faces in predictor.run(iter([(0, image)]), path):
            write_jpeg(out_dir / output_name(path, used_names), annotated)
            if not faces:
                errors.append(f"{path}: no face found")
            results.extend(faces)
    for path in videos:
        capture = open_video(path)
        if capture is None:
            errors.append(f"{path}: not a readable video (cannot decode its first frame)")
            continue
        video_results = predict_video(predictor, path, capture, out_dir)
        if not video_results:
            errors.append(f"{path}: no face found in any frame")
        results.extend(video_results)
    return results, errors


def write_results(out_dir: Path, results: list[FaceResult], report: dict) -> None:
    """``predictions.json`` (results + problems) and ``predictions.csv`` (one row per face)."""
    rows = [asdict(result) for result in results]
    write_json(out_dir / "predictions.json", {**report, "faces": rows})
    table = ([row[column] for column in RESULT_COLUMNS] for row in rows)
    write_csv(out_dir / "predictions.csv", RESULT_COLUMNS, table)


def run_predict(args: argparse.Namespace) -> None:
    """The ``headpose predict`` command."""
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        hint = " (train one with `dvc repro`)" if checkpoint == DEFAULT_CHECKPOINT else ""
        raise HeadposeError(f"checkpoint {checkpoint} does not exist{hint}")
    device = torch.device(args.device) if args.device else pick_device()
    model, meta = load_angles_model(checkpoint, device=device)
    boxes = read_box_file(args.boxes) if args.boxes else None
    predictor = FacePosePredictor(
        torch_angle_function(model), meta["image_size"], args.detector, boxes, args.batch_size
    )
    files, errors = collect_inputs(args.paths)
    out_dir = Path(args.out)
    results, file_errors = predict_files(predictor, files, out_dir)
    errors += file_errors
    report = {"checkpoint": str(checkpoint), "device": str(device), "errors": errors}
    write_results(out_dir, results, report)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    print(f"{len(results)} faces in {len(files)} files -> {out_dir}/predictions.json")
    if errors:
        raise SystemExit(1)


def add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict head poses on images, folders and videos"
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image, folder or video files")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model checkpoint")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--detector", default="haar", choices=sorted(DETECTORS), help="face detector"
    )
    parser.add_argument("--boxes", help="CSV/JSON of file[,frame],x0,y0,x1,y1 instead of detecting")
    parser.add_argument("--batch-size", type=int, default=32, help="faces per model batch")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.set_defaults(run=run_predict)
