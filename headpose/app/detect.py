"""Face detection for prediction: detectors, their calibration to the model's crop, box files.

A detector turns an RGB image into faces (:class:`FaceBox`: a box ``(x_min, y_min, x_max, y_max)``
in pixels, origin at the image's top-left corner, a confidence, and for some detectors five
landmarks). Detectors are registered by name in :data:`DETECTORS`; ``headpose predict --detector
NAME`` picks one.

* ``yunet`` (default): OpenCV's CNN face detector YuNet (``cv2.FaceDetectorYN``), with five
  landmarks per face. Its ONNX model (opencv_zoo's ``face_detection_yunet_2023mar.onnx``, MIT) is
  downloaded on first use into a cache folder (``$HEADPOSE_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/headpose``, else ``~/.cache/headpose``) and checked against its SHA-256
  (:func:`fetch_model`); a local copy can be given instead.
* ``haar``: the Haar cascades bundled with OpenCV (frontal + profile on the image and its mirror,
  merged by non-maximum suppression). Needs no download; far less complete on turned heads.

Every detector carries a :class:`BoxCalibration`: the measured linear map from what it outputs
to the tight 68-landmark box the model's training crops are built around (see
:mod:`headpose.crops.crop`). ``scripts/benchmark_detectors.py`` measures the maps on the real
AFLW2000 with :func:`fit_box_calibration`. Boxes can also come from a file (:func:`read_box_file`).

OpenCV's detector objects are not thread-safe (YuNet's input size is state set before each call;
from several threads at once they crash the process or return other threads' faces): each
detector here runs one ``detect`` at a time (a lock per detector object), so one detector may be
shared by threads and gives the results of the same calls made one after another.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from headpose.crops.crop import Box
from headpose.errors import HeadposeError
from headpose.io.files import file_problem
from headpose.io.images import MAX_IMAGE_PIXELS
from headpose.io.text import MIB, read_text_file
from headpose.models.weights import CACHE_DIR_ENV as CACHE_DIR_ENV  # the cache's setting
from headpose.models.weights import DownloadUnavailable, cache_dir, fetch_file


@dataclass(frozen=True)
class FaceBox:
    """One detected face: its box in pixels, the detector's confidence (higher is surer) and,
    for detectors that find them, landmarks as ``((x, y), ...)`` pixels (YuNet: right eye, left
    eye, nose tip, right and left mouth corner, "right" being the person's)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    score: float = 1.0
    landmarks_xy: tuple[tuple[float, float], ...] = ()

    @property
    def box(self) -> Box:
        return (self.x_min, self.y_min, self.x_max, self.y_max)


@dataclass(frozen=True)
class BoxCalibration:
    """A linear map from a detector's output to the 68-landmark box it stands for.

    Everything is in units of the detector box (x: ``(x - x_min) / width``, y likewise with the
    height). The features of a face are ``1`` followed, when the calibration has more than one
    row, by the (x, y) of each of its landmarks; ``weights`` (one row per feature) map them to
    the landmark box's ``(x_min, y_min, x_max, y_max)``. A one-row calibration is a fixed inset
    of each edge, as for the Haar boxes.
    """

    weights: tuple[tuple[float, float, float, float], ...]

    @classmethod
    def from_insets(cls, left: float, top: float, right: float, bottom: float) -> BoxCalibration:
        """Edges moved inwards by these fractions of the box width/height (negative: outwards)."""
        return cls(((left, top, 1.0 - right, 1.0 - bottom),))

    def features(self, face: FaceBox) -> np.ndarray:
        """The feature vector of ``face`` (see the class docstring)."""
        landmark_count = (len(self.weights) - 1) // 2
        if len(face.landmarks_xy) < landmark_count:
            raise HeadposeError(
                f"this calibration needs {landmark_count} landmarks per face, "
                f"the detector gave {len(face.landmarks_xy)}"
            )
        return box_features(face, landmark_count)

    def landmark_box(self, face: FaceBox) -> Box:
        """The tight landmark box ``face`` stands for, in pixels."""
        x_min, y_min, x_max, y_max = self.features(face) @ np.asarray(self.weights)
        width, height = face.x_max - face.x_min, face.y_max - face.y_min
        return (
            float(face.x_min + x_min * width),
            float(face.y_min + y_min * height),
            float(face.x_min + x_max * width),
            float(face.y_min + y_max * height),
        )


IDENTITY_CALIBRATION = BoxCalibration.from_insets(0.0, 0.0, 0.0, 0.0)


def box_features(face: FaceBox, landmark_count: int) -> np.ndarray:
    """``[1, x_1, y_1, ...]`` for the first ``landmark_count`` landmarks, in detector-box units."""
    width, height = face.x_max - face.x_min, face.y_max - face.y_min
    values = [1.0]
    for x, y in face.landmarks_xy[:landmark_count]:
        values += [(x - face.x_min) / width, (y - face.y_min) / height]
    return np.asarray(values)


def fit_box_calibration(
    faces: Sequence[FaceBox], landmark_boxes: Sequence[Box], landmark_count: int
) -> BoxCalibration:
    """Least-squares :class:`BoxCalibration` from detections and their true landmark boxes.

    ``landmark_count`` = 0 fits the four insets alone (the mean edge offsets in box units).
    """
    if len(faces) != len(landmark_boxes) or len(faces) <= 2 * landmark_count + 1:
        raise HeadposeError(f"need more matched faces than features to fit, got {len(faces)}")
    features = np.stack([box_features(face, landmark_count) for face in faces])
    targets = np.stack(
        [
            [
                (box[0] - face.x_min) / (face.x_max - face.x_min),
                (box[1] - face.y_min) / (face.y_max - face.y_min),
                (box[2] - face.x_min) / (face.x_max - face.x_min),
                (box[3] - face.y_min) / (face.y_max - face.y_min),
            ]
            for face, box in zip(faces, landmark_boxes, strict=True)
        ]
    )
    weights, *_ = np.linalg.lstsq(features, targets, rcond=None)
    return BoxCalibration(tuple(tuple(round(float(v), 4) for v in row) for row in weights))


class FaceDetector(Protocol):
    """Anything that finds faces in an RGB uint8 image (H, W, 3), with its box calibration."""

    name: str
    calibration: BoxCalibration

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]: ...


# --- Model files ---------------------------------------------------------------------------------

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_URL = (
    "https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/"
    f"face_detection_yunet/{YUNET_FILE}"
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"

# Offline, the error predict turns into a warning (and the Haar detector): one line naming the
# URL and where to put the file.
ModelUnavailable = DownloadUnavailable


def fetch_model(url: str, file_name: str, sha256: str) -> Path:
    """The cached copy of a model file, downloaded first if it is missing or fails its SHA-256
    check (the package's one downloader, :func:`headpose.models.weights.fetch_file`: a refused
    download writes nothing; no network raises :class:`ModelUnavailable`)."""
    return fetch_file(url, cache_dir() / file_name, sha256, f"face detector model {file_name}")


# --- Detectors -----------------------------------------------------------------------------------


def non_max_suppression(boxes: list[FaceBox], iou_threshold: float) -> list[FaceBox]:
    """Keep the highest-scoring box of every group overlapping by more than ``iou_threshold``."""
    kept: list[FaceBox] = []
    for candidate in sorted(boxes, key=lambda face: face.score, reverse=True):
        if all(box_iou(candidate.box, other.box) <= iou_threshold for other in kept):
            kept.append(candidate)
    return kept


def usable_box(box: Box, width: int, height: int) -> bool:
    """A detector box worth cropping: finite, at least a pixel wide and high, overlapping the
    ``width`` x ``height`` image."""
    x0, y0, x1, y1 = box
    return (
        all(math.isfinite(value) for value in box)
        and x1 - x0 >= 1
        and y1 - y0 >= 1
        and x1 > 0
        and y1 > 0
        and x0 < width
        and y0 < height
    )


def box_iou(first: Box, second: Box) -> float:
    """Intersection over union of two ``(x_min, y_min, x_max, y_max)`` boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    area_first = (first[2] - first[0]) * (first[3] - first[1])
    area_second = (second[2] - second[0]) * (second[3] - second[1])
    return intersection / (area_first + area_second - intersection)


class YuNetFaceDetector:
    """OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``): boxes, scores, five landmarks.

    Images whose longer side exceeds ``max_side_px`` are shrunk to it for detection (faster; the
    boxes are scaled back). A side then shorter than :attr:`min_side_px` is padded with black
    at the bottom or right (boxes unmoved): on an input 32 px high or less OpenCV 4.14's YuNet
    reads memory it never wrote and returns boxes that change from call to call (a 10000 x 50
    panorama, shrunk to 640 x 3, sometimes got a "face"). ``min_score`` drops faces below that
    confidence (0 to 1).

    ``calibration`` maps the box and its five landmarks to the 68-landmark box (least squares,
    rows: bias, then x and y of each landmark, in box units). It was fitted by
    ``scripts/benchmark_detectors.py --fit`` on the real AFLW2000: the faces it found in the
    even-numbered images against their ``pt3d_68`` box; on the odd-numbered ones (held out) the
    median IoU of predict's crop with the training-style crop is 0.89 (four insets alone: 0.87;
    the raw box, over all found faces: 0.69). ``tests/test_detect.py`` re-measures it.
    """

    name = "yunet"
    min_side_px = 64
    calibration = BoxCalibration(
        (
            (0.4077, -1.1863, 0.4535, 0.904),
            (-0.2335, 0.6849, 0.65, 0.1865),
            (0.3862, 0.3289, -1.0078, -0.3776),
            (-0.2439, -0.0157, 1.1234, -0.3479),
            (-0.721, 1.1056, 1.2769, 0.0324),
            (0.4917, -0.539, -1.462, 0.1582),
            (0.5219, -1.3891, -0.2538, 0.1874),
            (-0.3175, -0.5206, 0.5237, -0.2852),
            (-0.2432, 1.3842, 1.8295, 0.3651),
            (-0.3721, 0.8626, 0.218, 0.1685),
            (-0.1085, 0.4382, -1.7782, -0.0984),
        )
    )

    def __init__(
        self,
        model_path: str | os.PathLike,
        min_score: float = 0.6,
        nms_iou: float = 0.3,
        max_side_px: int = 640,
    ) -> None:
        try:
            self.network = cv2.FaceDetectorYN.create(
                str(model_path), "", (320, 320), min_score, nms_iou, 5000
            )
        except cv2.error:
            raise HeadposeError(
                f"{model_path} is not a YuNet face detection model that OpenCV can load"
            ) from None
        self.max_side_px = max_side_px
        self._lock = threading.Lock()  # one detect at a time: cv2.FaceDetectorYN keeps state

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        with self._lock:
            return self._detect(image_rgb)

    def _detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        height, width = image_rgb.shape[:2]
        scale = min(1.0, self.max_side_px / max(height, width))
        image = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            size = (max(round(width * scale), 1), max(round(height * scale), 1))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        short_by = [max(self.min_side_px - side, 0) for side in image.shape[:2]]
        if any(short_by):
            image = cv2.copyMakeBorder(
                image, 0, short_by[0], 0, short_by[1], cv2.BORDER_CONSTANT, value=0
            )
        self.network.setInputSize((image.shape[1], image.shape[0]))
        _, rows = self.network.detect(image)
        faces = []
        for row in [] if rows is None else rows / np.append(np.full(14, scale), 1.0):
            x, y, box_width, box_height = (float(value) for value in row[:4])
            landmarks = tuple((float(row[i]), float(row[i + 1])) for i in range(4, 14, 2))
            faces.append(FaceBox(x, y, x + box_width, y + box_height, float(row[14]), landmarks))
        return faces


class HaarFaceDetector:
    """OpenCV's bundled Haar cascades: frontal + profile (both sides), merged by NMS.

    ``min_size_fraction`` is the smallest face side as a fraction of the image's shorter side.
    Scores are the cascades' final-stage level weights (frontal boxes score about 7, profile
    boxes about 2 on AFLW2000), so NMS prefers a frontal box where both fire.

    ``calibration`` holds insets measured on real AFLW2000 (medians over the images of every 10th
    file where the frontal cascade found the face, against the box of ``pt3d_68``): a Haar
    frontal box is about as wide as the landmarks' box (inset 0.09 per side), starts well above
    the eyebrows (0.23 of its height) and ends just above the chin (-0.04: the chin is below).
    Profile boxes are less regular (inter-quartile range about 0.2 of the width) and use the
    same insets. ``tests/test_predict.py`` re-measures them.
    """

    name = "haar"
    calibration = BoxCalibration.from_insets(0.09, 0.23, 0.09, -0.04)

    def __init__(
        self,
        min_neighbors: int = 5,
        min_size_fraction: float = 0.1,
        iou_threshold: float = 0.3,
        min_score: float | None = None,
    ) -> None:
        self.frontal = _load_cascade("haarcascade_frontalface_default.xml")
        self.profile = _load_cascade("haarcascade_profileface.xml")
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction
        self.iou_threshold = iou_threshold
        self.min_score = min_score
        self._lock = threading.Lock()  # one detect at a time: cv2.CascadeClassifier keeps state

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        with self._lock:
            return self._detect(image_rgb)

    def _detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        gray = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        width = gray.shape[1]
        faces = self._run(self.frontal, gray) + self._run(self.profile, gray)
        for mirrored in self._run(self.profile, cv2.flip(gray, 1)):
            faces.append(
                FaceBox(
                    width - mirrored.x_max,
                    mirrored.y_min,
                    width - mirrored.x_min,
                    mirrored.y_max,
                    mirrored.score,
                )
            )
        if self.min_score is not None:
            faces = [face for face in faces if face.score >= self.min_score]
        return non_max_suppression(faces, self.iou_threshold)

    def _run(self, cascade: cv2.CascadeClassifier, gray: np.ndarray) -> list[FaceBox]:
        side = max(int(min(gray.shape) * self.min_size_fraction), 20)
        rects, _, weights = cascade.detectMultiScale3(
            gray,
            scaleFactor=1.1,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        return [
            FaceBox(float(x), float(y), float(x + w), float(y + h), float(score))
            for (x, y, w, h), score in zip(rects, np.ravel(weights), strict=True)
        ]


def _load_cascade(file_name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / file_name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise HeadposeError(f"cannot load OpenCV's Haar cascade {path}")
    return cascade


def check_min_score(detector: str, min_score: float | None) -> None:
    """YuNet's scores are probabilities (0 to 1); Haar's are cascade weights (0 and up)."""
    if min_score is None:
        return
    high = 1.0 if detector == "yunet" else math.inf
    if not 0.0 <= min_score <= high:
        expected = "a score in [0, 1]" if detector == "yunet" else "a score of at least 0"
        raise HeadposeError(f"--min-score {min_score:g}: the {detector} detector needs {expected}")


def _make_yunet(model_path: str | None, min_score: float | None) -> YuNetFaceDetector:
    if model_path is None:
        model_path = fetch_model(YUNET_URL, YUNET_FILE, YUNET_SHA256)
    elif problem := file_problem(model_path):
        raise HeadposeError(f"detector model {model_path} {problem}")
    return YuNetFaceDetector(model_path, **({} if min_score is None else {"min_score": min_score}))


def _make_haar(model_path: str | None, min_score: float | None) -> HaarFaceDetector:
    if model_path is not None:
        raise HeadposeError("the haar detector uses OpenCV's bundled cascades, not a model file")
    return HaarFaceDetector(min_score=min_score)


# Detector name -> factory(model_path or None, min_score or None). The first is the default.
DETECTORS: dict[str, Callable[[str | None, float | None], FaceDetector]] = {
    "yunet": _make_yunet,
    "haar": _make_haar,
}
DEFAULT_DETECTOR = next(iter(DETECTORS))


def make_detector(
    name: str, model_path: str | None = None, min_score: float | None = None
) -> FaceDetector:
    """Build the detector registered under ``name`` (``model_path``: a local model file instead
    of the cached download; ``min_score``: its confidence threshold instead of the default).

    Raises :class:`ModelUnavailable` when its model can be neither found nor downloaded.
    """
    if name not in DETECTORS:
        raise HeadposeError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}")
    check_min_score(name, min_score)
    return DETECTORS[name](model_path, min_score)


def face_box_finder(model_path: str | None = None) -> Callable[[np.ndarray], list[Box]]:
    """The default detector as a function RGB image -> face boxes ``(x0, y0, x1, y1)`` (a test
    set's ``frame_list: detector``); ``model_path``: a local model file instead of the cached
    download."""
    detector = make_detector(DEFAULT_DETECTOR, model_path)
    return lambda image_rgb: [face.box for face in detector.detect(image_rgb)]


BOX_COLUMNS = ("x0", "y0", "x1", "y1")
BOX_FILE_MAX_BYTES = 256 * MIB  # a box per face and frame: a long video's is a few MB

# (file as written in the box file, frame index; 0 for still images) -> boxes of that image
BoxTable = dict[tuple[str, int], list[FaceBox]]


def read_box_file(path: str | os.PathLike) -> BoxTable:
    """Read face boxes from CSV (header ``file[,frame],x0,y0,x1,y1``) or a JSON list of objects.

    ``frame`` is the video frame index (0-based) and defaults to 0 for still images. Look boxes
    up with :func:`boxes_for`.
    """
    file = Path(path)
    text = read_text_file(file, BOX_FILE_MAX_BYTES, "box file")
    if file.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise HeadposeError(f"box file {file} is not valid JSON: {error}") from None
        except RecursionError:
            raise HeadposeError(
                f"box file {file} nests too deeply; expected a JSON list of objects"
            ) from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise HeadposeError(f"box file {file} must hold a JSON list of objects")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    table: BoxTable = {}
    for number, row in enumerate(rows, start=1):
        try:
            key = (str(row["file"]), int(row.get("frame") or 0))
            x_min, y_min, x_max, y_max = (float(row[column]) for column in BOX_COLUMNS)
        except (KeyError, TypeError, ValueError):
            raise HeadposeError(
                f"box file {file}, row {number}: expected file[,frame],x0,y0,x1,y1 with numbers, "
                f"got {row!r}"
            ) from None
        coordinates = (x_min, y_min, x_max, y_max)
        if not all(math.isfinite(v) and abs(v) <= MAX_IMAGE_PIXELS for v in coordinates):
            raise HeadposeError(
                f"box file {file}, row {number}: coordinates {coordinates} must be finite "
                f"pixel positions within +-{MAX_IMAGE_PIXELS}"
            )
        if x_max <= x_min or y_max <= y_min:
            raise HeadposeError(f"box file {file}, row {number}: x1 > x0 and y1 > y0 expected")
        table.setdefault(key, []).append(FaceBox(x_min, y_min, x_max, y_max))
    return table


def boxes_for(table: BoxTable, image_path: Path, frame: int) -> list[FaceBox]:
    """The boxes listed for an image (by its path as given, else by its file name)."""
    for name in (str(image_path), image_path.as_posix(), image_path.name):
        if (name, frame) in table:
            return table[(name, frame)]
    return []
