"""Prediction on images, folders and videos: detect faces, crop, predict, draw, report.

``headpose predict PATH... --checkpoint CKPT --out DIR`` takes image files, folders of images
(not recursive) and video files. For every face it writes one result row (file, frame, box, yaw,
pitch, roll in degrees) to ``DIR/predictions.json`` and ``DIR/predictions.csv``, and an annotated
copy of each input (``DIR/<name>.jpg`` for images, ``DIR/<stem>.mp4`` for videos) with the face
box and the three head axes (:mod:`headpose.app.draw`).

Faces come from a detector (:mod:`headpose.app.detect`; YuNet by default, whose model is downloaded
once; offline without it, a warning line and the Haar detector) or from a ``--boxes`` file. Each
face is predicted; an image or frame may hold several.

The model is opened by the one opener of model files (:mod:`headpose.inference.loading`), and
faces are cropped and predicted by the Python API (:mod:`headpose.app.api`); this module adds the
files: inputs, the detector or box file, drawing, outputs and timings.

From detector box to model crop. The model is trained on HopeNet's loose crops of the 68-landmark
box under a crop protocol (:mod:`headpose.crops.protocols`; the checkpoint, or an ``.onnx`` file's
metadata, records which; ``--crop-protocol`` replaces it). A detection is first mapped to
the landmark box it stands for by the detector's measured
:class:`headpose.app.detect.BoxCalibration` (YuNet: from its box and five landmarks; in pixel
coordinates, to which ``hopenet`` adds the 1 of the stored 1-based points it frames), then
framed as a training crop at the middle of the training range (k = 0.3, train margins, and under
``hopenet`` the centre of its random crops:
:meth:`headpose.crops.protocols.CropProtocol.prediction_crop`), so a
face arrives at the network framed as the training crops framed it on average. Boxes read from a
``--boxes`` file are taken as tight landmark boxes in pixel coordinates.

Speed. Each frame is one model call over all its faces, with the PyTorch checkpoint or an
exported ONNX model (``--runtime onnx``, or a ``.onnx`` file such as ``deploy/model_int8.onnx``,
in ONNX Runtime). The milliseconds of every stage (decode, detect, crop, model, draw, write) are
measured per frame, summarised per video (and for all images) on stdout and in the JSON.

Outputs of one run never mix with another's: everything is written into a hidden staging
folder inside ``DIR`` and moved in at the end (:func:`headpose.io.files.update_folder`), after
the files the previous run's ``predictions.json`` lists as its ``outputs`` are removed. An
interrupted run leaves ``DIR`` as it was; a killed run's staging folder is removed by the next.

Problems with single inputs (no face found, a file that is not an image or video, an unreadable
video) are reported on stderr and in the JSON and do not stop the batch: every other file still
goes through, and the command then exits with status 1.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from headpose.app.api import (
    HeadPoseModel,
    build_detector,
    detected_faces,
    protocol_landmark_box,
)
from headpose.app.detect import (
    DEFAULT_DETECTOR,
    IDENTITY_CALIBRATION,
    BoxTable,
    FaceBox,
    FaceDetector,
    boxes_for,
    check_min_score,
    read_box_file,
)
from headpose.app.draw import draw_pose
from headpose.crops.protocols import CropProtocol
from headpose.errors import HeadposeError
from headpose.inference.loading import open_model
from headpose.io.files import (
    atomic_path,
    staging_folder,
    update_folder,
    write_csv,
    write_json,
)
from headpose.io.images import decode_rgb, write_jpeg
from headpose.io.text import MIB, read_text_file

DEFAULT_CHECKPOINT = Path("models/model.pt")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
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


STAGES = ("detect", "crop", "model", "draw")  # timed per frame by FacePosePredictor.run


class FacePosePredictor:
    """Finds faces in RGB frames and predicts their poses with ``model`` (the Python API's
    :class:`~headpose.app.api.HeadPoseModel`: its crops, one model batch per frame).

    ``boxes`` (a table from :func:`headpose.app.detect.read_box_file`) replaces ``detector``; its
    boxes are taken as tight landmark boxes.
    """

    def __init__(
        self,
        model: HeadPoseModel,
        detector: FaceDetector | None = None,
        boxes: BoxTable | None = None,
    ) -> None:
        if (detector is None) == (boxes is None):
            raise HeadposeError("give either a face detector or a box table")
        self.model = model
        self.detector = detector
        self.boxes = boxes
        self.calibration = IDENTITY_CALIBRATION if detector is None else detector.calibration

    def faces(self, image_rgb: np.ndarray, path: Path, frame: int) -> list[FaceBox]:
        """The faces of a frame: a detector's usable boxes only
        (:func:`headpose.app.api.detected_faces`), or the box file's (checked against the image
        where the crops are made, :meth:`HeadPoseModel.crops`)."""
        if self.detector is not None:
            return detected_faces(self.detector, image_rgb)
        return boxes_for(self.boxes, path, frame)

    def landmark_box(self, face: FaceBox) -> tuple[float, float, float, float]:
        """The landmark box the model's crop of ``face`` is framed around."""
        return protocol_landmark_box(face, self.calibration, self.model.crop_protocol)

    def run(
        self, frames: Iterator[tuple[int, np.ndarray]], path: Path
    ) -> Iterator[tuple[np.ndarray, list[FaceResult], dict[str, float]]]:
        """For each (index, RGB frame): yield the frame annotated in place, its face results and
        the milliseconds each stage took on it (:data:`STAGES`)."""
        for index, image in frames:
            start = time.perf_counter()
            faces = self.faces(image, path, index)
            detected = time.perf_counter()
            crops = self.model.crops(image, faces, self.calibration, str(path))
            cropped = time.perf_counter()
            angles = self.model.predict_crops(crops)
            predicted = time.perf_counter()
            results = []
            for face, (yaw, pitch, roll) in zip(faces, angles.tolist(), strict=True):
                draw_pose(image, face.box, yaw, pitch, roll)
                results.append(
                    FaceResult(str(path), index, *face.box, face.score, yaw, pitch, roll)
                )
            drawn = time.perf_counter()
            marks = (start, detected, cropped, predicted, drawn)
            timings_ms = {stage: 1000 * (marks[i + 1] - marks[i]) for i, stage in enumerate(STAGES)}
            yield image, results, timings_ms


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Expand folders into their image and video files; return (files, problems)."""
    files: list[Path] = []
    problems: list[str] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            try:
                entries = sorted(path.iterdir())
            except OSError as error:
                problems.append(f"{path}: folder not readable: {error.strerror}")
                continue
            named = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
            for entry in named:
                if entry.is_file():
                    files.append(entry)
                elif entry.is_symlink() and not entry.exists():
                    problems.append(f"{entry}: a broken link (its target does not exist)")
                else:
                    problems.append(f"{entry}: not a regular file")
            if not named:
                problems.append(f"{path}: folder holds no image or video files")
        elif path.is_file() or camera_index(path) is not None:
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


def camera_index(path: Path) -> int | None:
    """The camera index an input names (``0``, ``1`` ... that is no file), else None."""
    text = str(path)
    return int(text) if text.isdigit() and not path.exists() else None


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES or camera_index(path) is not None


def open_video(path: Path) -> cv2.VideoCapture | None:
    """An opened capture (a file rewound to its first frame, or a camera) that decodes, or None."""
    camera = camera_index(path)
    capture = cv2.VideoCapture(str(path) if camera is None else camera)
    if not capture.isOpened() or not capture.read()[0]:
        capture.release()
        return None
    if camera is None:
        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return capture


def timed(items: Iterator, milliseconds: list[float]) -> Iterator:
    """Yield from ``items``, appending the time each item took to produce to ``milliseconds``."""
    while True:
        start = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            return
        milliseconds.append(1000 * (time.perf_counter() - start))
        yield item


def timing_summary(frames_ms: list[dict[str, float]], wall_s: float) -> dict:
    """Median and mean milliseconds per stage, frames per second of the wall time, and the
    per-frame milliseconds of every stage."""
    stages = list(frames_ms[0]) if frames_ms else []
    columns = {stage: np.array([frame[stage] for frame in frames_ms]) for stage in stages}
    return {
        "frames": len(frames_ms),
        "wall_s": round(wall_s, 3),
        "frames_per_s": round(len(frames_ms) / wall_s, 2) if wall_s > 0 else None,
        "median_ms": {stage: round(float(np.median(ms)), 3) for stage, ms in columns.items()},
        "mean_ms": {stage: round(float(ms.mean()), 3) for stage, ms in columns.items()},
        "per_frame_ms": {
            stage: [round(v, 3) for v in ms.tolist()] for stage, ms in columns.items()
        },
    }


def format_timings(name: str, summary: dict) -> str:
    """One line: frames, frames per second and the median milliseconds of each stage."""
    stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in summary["median_ms"].items())
    rate = summary["frames_per_s"]
    return (
        f"{name}: {summary['frames']} frames, {rate if rate is not None else '-'} frames/s; "
        f"median ms per frame: {stages}"
    )


def predict_video(
    predictor: FacePosePredictor,
    path: Path,
    capture: cv2.VideoCapture,
    out_dir: Path,
    max_frames: int | None = None,
) -> tuple[list[FaceResult], dict]:
    """Annotate every frame of a video (or camera) into ``out_dir/<stem>.mp4`` (mp4v); return
    its results and the timing summary of its frames (decode and write included)."""
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    camera = camera_index(path)
    stem = path.stem if camera is None else f"camera{camera}"
    results: list[FaceResult] = []
    frames_ms: list[dict[str, float]] = []
    decode_ms: list[float] = []
    target = out_dir / f"{stem}.mp4"
    frames = itertools.islice(video_frames(capture), max_frames)
    with (
        atomic_path(target) as temp,
        tqdm(frames, total=total, desc=path.name, unit="frame") as progress,
    ):
        writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise HeadposeError(f"cannot write video {target} with the mp4v codec")
        start = time.perf_counter()
        for image, frame_results, stage_ms in predictor.run(timed(iter(progress), decode_ms), path):
            written = time.perf_counter()
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            stage_ms["write"] = 1000 * (time.perf_counter() - written)
            frames_ms.append({"decode": decode_ms[-1], **stage_ms})
            results.extend(frame_results)
        wall_s = time.perf_counter() - start
        writer.release()
    capture.release()
    return results, timing_summary(frames_ms, wall_s)


def output_name(path: Path, used: set[str]) -> str:
    """A unique output file name for an input image (``name.jpg``, then ``name_2.jpg`` ...)."""
    name, number = f"{path.stem}.jpg", 1
    while name in used:
        number += 1
        name = f"{path.stem}_{number}.jpg"
    used.add(name)
    return name


def predict_files(
    predictor: FacePosePredictor,
    files: list[Path],
    out_dir: Path,
    max_frames: int | None = None,
) -> tuple[list[FaceResult], list[str], dict[str, dict]]:
    """Run every file; return (face results, problems, timing summaries: one per video and one
    for all images). A bad file never stops the rest."""
    results: list[FaceResult] = []
    errors: list[str] = []
    timings: dict[str, dict] = {}
    used_names: set[str] = set()
    images = [path for path in files if not is_video(path)]
    videos = [path for path in files if is_video(path)]
    images_ms: list[dict[str, float]] = []
    start = time.perf_counter()
    with tqdm(images, desc="images", unit="image", disable=len(images) < 2) as progress:
        for path in progress:
            decode_start = time.perf_counter()
            try:
                image = decode_rgb(path, upright=True)  # a photo as a viewer shows it
                if image is None:
                    errors.append(f"{path}: not a readable image or video")
                    continue
                decode_ms = 1000 * (time.perf_counter() - decode_start)
                for annotated, faces, stage_ms in predictor.run(iter([(0, image)]), path):
                    images_ms.append({"decode": decode_ms, **stage_ms})
                    write_jpeg(out_dir / output_name(path, used_names), annotated)
                    if not faces:
                        errors.append(f"{path}: no face found")
                    results.extend(faces)
            except (HeadposeError, OSError) as error:  # this file only: the rest still go through
                errors.append(
                    str(error) if isinstance(error, HeadposeError) else f"{path}: {error}"
                )
    if images_ms:
        timings["images"] = timing_summary(images_ms, time.perf_counter() - start)
    for path in videos:
        capture = open_video(path)
        if capture is None:
            errors.append(f"{path}: not a readable video or camera (cannot decode a first frame)")
            continue
        video_results, timings[str(path)] = predict_video(
            predictor, path, capture, out_dir, max_frames
        )
        if not video_results:
            errors.append(f"{path}: no face found in any frame")
        results.extend(video_results)
    return results, errors, timings


RESULT_FILES = ("predictions.json", "predictions.csv")  # the first says a set is complete
PREDICTIONS_MAX_BYTES = 1024 * MIB  # a face and its timings per frame: a long video's is large


def write_results(out_dir: Path, results: list[FaceResult], report: dict) -> None:
    """``predictions.json`` (results + problems) and ``predictions.csv`` (one row per face)."""
    rows = [asdict(result) for result in results]
    table = ([row[column] for column in RESULT_COLUMNS] for row in rows)
    write_csv(out_dir / RESULT_FILES[1], RESULT_COLUMNS, table)
    write_json(out_dir / RESULT_FILES[0], {**report, "faces": rows})


def previous_outputs(out_dir: Path) -> list[str]:
    """The files an earlier run wrote into ``out_dir``: the ``outputs`` its complete
    ``predictions.json`` lists (a missing or unreadable one lists none)."""
    try:
        text = read_text_file(out_dir / RESULT_FILES[0], PREDICTIONS_MAX_BYTES, "predictions")
        outputs = json.loads(text)["outputs"]
    except (HeadposeError, ValueError, KeyError, TypeError, RecursionError):
        return []
    return [name for name in outputs if isinstance(name, str)] if isinstance(outputs, list) else []


def refuse_writing_over_inputs(files: list[Path], out_dir: Path) -> None:
    """Annotated copies are written into ``out_dir`` under their inputs' names: refuse, before
    any work, an ``out_dir`` that holds an input file (it would be replaced by its annotated
    copy)."""
    target = out_dir.resolve()
    inside = [
        path for path in files if camera_index(path) is None and path.resolve().parent == target
    ]
    if inside:
        raise HeadposeError(
            f"--out {out_dir} holds the input {inside[0]}"
            + (f" (and {len(inside) - 1} more)" if len(inside) > 1 else "")
            + ": its annotated copy would replace it; choose another output folder"
        )


def predict(
    paths: list[str],
    checkpoint: Path,
    out_dir: Path,
    *,
    runtime: str = "auto",
    detector: str = DEFAULT_DETECTOR,
    detector_model: str | None = None,
    min_score: float | None = None,
    boxes: str | None = None,
    batch_size: int = 32,
    max_frames: int | None = None,
    device: str | None = None,
    crop_protocol: CropProtocol | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    image_size: int | None = None,
    card: str | None = None,
) -> list[str]:
    """Predict every face of ``paths`` (images, folders, videos, camera indices) into
    ``out_dir``, print the timings and problems; return the problems (one line each). The model
    is opened by the one opener (:func:`headpose.inference.loading.open_model`: ``runtime``,
    ``device``, and the values or model ``card`` an ``.onnx`` exported elsewhere needs; a
    published model's name) and predicts as the Python
    API's :class:`~headpose.app.api.HeadPoseModel`."""
    if not boxes:
        check_min_score(detector, min_score)
    files, errors = collect_inputs(paths)
    refuse_writing_over_inputs(files, out_dir)
    loaded = open_model(
        checkpoint,
        runtime,
        device,
        image_size=image_size,
        mean=mean,
        std=std,
        crop_protocol=crop_protocol,
        card=card,
    )
    model = HeadPoseModel(loaded, batch_size)
    box_table = read_box_file(boxes) if boxes else None
    face_detector = build_detector(boxes, detector, detector_model, min_score)
    predictor = FacePosePredictor(model, face_detector, box_table)
    with staging_folder(out_dir) as staged:
        results, file_errors, timings = predict_files(predictor, files, staged, max_frames)
        errors += file_errors
        report = {
            "checkpoint": str(checkpoint),
            "runtime": model.runs_on,
            "crop_protocol": model.crop_protocol.name,
            "detector": "boxes file" if face_detector is None else face_detector.name,
            "timings": timings,
            "errors": errors,
            "outputs": sorted([path.name for path in staged.iterdir()] + list(RESULT_FILES)),
        }
        write_results(staged, results, report)
        previous = previous_outputs(out_dir)
        update_folder(out_dir, staged, previous=previous, complete_marker=RESULT_FILES[0])
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    for name, summary in timings.items():
        print(format_timings(name, summary))
    print(f"{len(results)} faces in {len(files)} files -> {out_dir}/predictions.json")
    return errors
