"""Face detection for prediction: a small pluggable detector interface and its implementations.

A detector turns an RGB image into face boxes ``(x_min, y_min, x_max, y_max)`` in pixels (origin
at the image's top-left corner). Detectors are registered by name in :data:`DETECTORS`, so a
better one (a CNN detector, say) is added by writing a class with a ``detect`` method and one
registry line; ``headpose predict --detector NAME`` picks it.

The default, ``haar``, uses the Haar cascades bundled with OpenCV: the frontal cascade, the
profile cascade, and the profile cascade on the mirrored image (it only knows one side), with the
boxes of all three merged by non-maximum suppression. Boxes can also come from a file
(:func:`read_box_file`) instead of a detector.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from headpose.errors import HeadposeError


@dataclass(frozen=True)
class FaceBox:
    """One detected face: its box in pixels and the detector's confidence (higher is surer)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    score: float = 1.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)


class FaceDetector(Protocol):
    """Anything that finds faces in an RGB uint8 image (H, W, 3).

    ``landmark_insets`` says how this detector's boxes relate to the tight 68-landmark box the
    model's crops are built from: the fractions of the box width/height by which the (left, top,
    right, bottom) edges move inwards (negative: outwards). See :func:`landmark_box_estimate`.
    """

    landmark_insets: tuple[float, float, float, float]

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]: ...


def landmark_box_estimate(
    face: FaceBox, insets: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """The tight landmark box a detector box stands for, by the detector's measured insets."""
    width, height = face.x_max - face.x_min, face.y_max - face.y_min
    left, top, right, bottom = insets
    return (
        face.x_min + left * width,
        face.y_min + top * height,
        face.x_max - right * width,
        face.y_max - bottom * height,
    )


def non_max_suppression(boxes: list[FaceBox], iou_threshold: float) -> list[FaceBox]:
    """Keep the highest-scoring box of every group overlapping by more than ``iou_threshold``."""
    kept: list[FaceBox] = []
    for candidate in sorted(boxes, key=lambda face: face.score, reverse=True):
        if all(box_iou(candidate.box, other.box) <= iou_threshold for other in kept):
            kept.append(candidate)
    return kept


def box_iou(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    """Intersection over union of two ``(x_min, y_min, x_max, y_max)`` boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    area_first = (first[2] - first[0]) * (first[3] - first[1])
    area_second = (second[2] - second[0]) * (second[3] - second[1])
    return intersection / (area_first + area_second - intersection)


class HaarFaceDetector:
    """OpenCV's bundled Haar cascades: frontal + profile (both sides), merged by NMS.

    ``min_size_fraction`` is the smallest face side as a fraction of the image's shorter side.
    Scores are the cascades' final-stage level weights (frontal boxes score about 7, profile
    boxes about 2 on AFLW2000), so NMS prefers a frontal box where both fire.

    ``landmark_insets`` were measured on real AFLW2000 (medians over the images of every 10th
    file where the frontal cascade found the face, against the box of ``pt3d_68``): a Haar
    frontal box is about as wide as the landmarks' box (inset 0.09 per side), starts well above
    the eyebrows (0.23 of its height) and ends just above the chin (-0.04: the chin is below).
    Profile boxes are less regular (inter-quartile range about 0.2 of the width) and use the
    same insets. ``tests/test_predict.py`` re-measures them.
    """

    landmark_insets = (0.09, 0.23, 0.09, -0.04)

    def __init__(
        self,
        min_neighbors: int = 5,
        min_size_fraction: float = 0.1,
        iou_threshold: float = 0.3,
    ) -> None:
        self.frontal = _load_cascade("haarcascade_frontalface_default.xml")
        self.profile = _load_cascade("haarcascade_profileface.xml")
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction
        self.iou_threshold = iou_threshold

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
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


# Detector name -> factory. Add a detector here to make it available as --detector NAME.
DETECTORS: dict[str, Callable[[], FaceDetector]] = {"haar": HaarFaceDetector}


def make_detector(name: str) -> FaceDetector:
    """Build the detector registered under ``name``."""
    if name not in DETECTORS:
        raise HeadposeError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}")
    return DETECTORS[name]()


BOX_COLUMNS = ("x0", "y0", "x1", "y1")

# (file as written in the box file, frame index; 0 for still images) -> boxes of that image
BoxTable = dict[tuple[str, int], list[FaceBox]]


def read_box_file(path: str | os.PathLike) -> BoxTable:
    """Read face boxes from CSV (header ``file[,frame],x0,y0,x1,y1``) or a JSON list of objects.

    ``frame`` is the video frame index (0-based) and defaults to 0 for still images. Look boxes
    up with :func:`boxes_for`.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HeadposeError(f"cannot read box file {file}: {error}") from None
    if file.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise HeadposeError(f"box file {file} is not valid JSON: {error}") from None
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
