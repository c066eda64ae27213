"""The Python API: a trained model in a few lines of Python (re-exported as ``headpose.load``).

    import headpose

    model = headpose.load("models/best.pt")   # or an .onnx file, or "fsanet" (a published model)
    for pose in model.predict("face.jpg"):    # every face the detector finds
        print(pose.yaw_deg, pose.pitch_deg, pose.roll_deg, pose.box)

:func:`load` opens a ``.pt`` checkpoint or an ``.onnx`` file through the one opener of model
files, :func:`headpose.inference.loading.open_model` (PyTorch on CUDA when available, else the
CPU; an ``.onnx`` file in ONNX Runtime on the CPU; the file's own input size, normalisation and
crop protocol). A :class:`HeadPoseModel` then predicts:

* :meth:`HeadPoseModel.predict`: the faces of an image (an RGB uint8 array ``(H, W, 3)`` or an
  image file), found by a detector (:mod:`headpose.app.detect`; YuNet by default, Haar when
  YuNet cannot be had) or given as boxes, each cropped as the model's training crops framed faces
  (:meth:`HeadPoseModel.crops`, the crop code of ``headpose predict``);
* :meth:`HeadPoseModel.predict_crops`: a batch of ready crops, uint8 RGB ``(N, S, S, 3)``.

Where a label is given (``predict(image, boxes, labels=...)``, or :meth:`Pose.error_against`),
a pose carries its :class:`PoseError`: the absolute error of each angle, their mean, and the
geodesic error and MAEV, computed by :mod:`headpose.evaluation.metrics` as the evaluation does.

Angles are degrees in the project's convention (``docs/conventions.md``): yaw, pitch, roll, as
the datasets label them. Bad input is one HeadposeError line naming the argument, checked where
it enters: a missing or unreadable file, a path that is not ``str`` or ``os.PathLike``, an
``image_size`` or ``batch_size`` outside the rules ``params.yaml`` and the CLI apply
(:func:`headpose.params.check_argument`; a boolean is no number), an image that is not RGB uint8
``(H, W, 3)`` with pixels, crops of another side or dtype (a list of crops of mixed sizes names
the first that differs: crops are not resized, :meth:`HeadPoseModel.crops` makes them), a face
box that is empty, wholly outside the image or more than one image size beyond its edge
(:func:`headpose.datasets.labels.check_box`, the bound ``headpose predict --boxes`` applies too),
an ``.onnx`` file that records no metadata and was given no values.

A model may be used from several threads at once (a web server's handlers): the model runs
without shared state, and each detector serialises its own calls (OpenCV's detectors are not
thread-safe), so concurrent calls give the results of the same calls made one after another.
A detector object of your own passed to :meth:`HeadPoseModel.predict` must be thread-safe itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from headpose.app.detect import (
    DEFAULT_DETECTOR,
    IDENTITY_CALIBRATION,
    BoxCalibration,
    FaceBox,
    FaceDetector,
    ModelUnavailable,
    make_detector,
    usable_box,
)
from headpose.crops.crop import Box
from headpose.crops.protocols import CropProtocol, get_protocol
from headpose.datasets.labels import check_box
from headpose.errors import HeadposeError, shorten
from headpose.evaluation.metrics import absolute_errors_deg, rotation_errors_deg
from headpose.inference.batches import crop_angles
from headpose.inference.card import ModelCard
from headpose.inference.loading import LoadedModel, open_model
from headpose.inference.metadata import ModelDescription
from headpose.io.files import file_problem
from headpose.io.images import decode_rgb
from headpose.models.registry import Normalization
from headpose.params import FINITE_NUMBER, SCHEMA, check_argument

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class PoseError:
    """How far a predicted pose is from its label, in degrees: the absolute error of each angle
    and their mean (Euler MAE), the geodesic error (the angle of ``R_true^T R_pred``) and MAEV
    (the mean angle between the matching columns of the two rotation matrices); see
    ``docs/conventions.md``."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    mae_deg: float
    geodesic_deg: float
    maev_deg: float


def _label(label: Sequence[float]) -> np.ndarray:
    """A label ``(yaw, pitch, roll)`` in degrees as a (3,) float64 array, checked."""
    values: list[float] = []
    if isinstance(label, (Sequence, np.ndarray)) and not isinstance(label, str):
        try:
            values = [float(v) for v in label]
        except (TypeError, ValueError):
            values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise HeadposeError(
            f"a label is 3 finite numbers (yaw, pitch, roll degrees), got {label!r}"
        )
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class Pose:
    """One face's head pose in degrees; ``box`` is the face's box ``(x0, y0, x1, y1)`` in pixels
    (the detector's or the one given), ``score`` the detector's confidence (None for a given
    box) and ``error`` its :class:`PoseError` against the label given with it (None without)."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    box: tuple[float, float, float, float] | None = None
    score: float | None = None
    error: PoseError | None = None

    def error_against(self, label: Sequence[float]) -> PoseError:
        """This pose's :class:`PoseError` against ``label``, the true ``(yaw, pitch, roll)``
        in degrees (the datasets' convention)."""
        true_deg = _label(label)[None]
        predicted_deg = np.array([[self.yaw_deg, self.pitch_deg, self.roll_deg]])
        absolute = absolute_errors_deg(predicted_deg, true_deg)[0]
        geodesic, maev = rotation_errors_deg(predicted_deg, true_deg)[0]
        return PoseError(*(float(v) for v in absolute), float(absolute.mean()), float(geodesic),
                         float(maev))  # fmt: skip


def read_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` image with pixels: the array itself (C-contiguous), or a file
    decoded upright (as a viewer shows it)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise HeadposeError(
                f"an image array must be RGB uint8 of shape (H, W, 3), got {image.dtype} "
                f"{image.shape}"
            )
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise HeadposeError(f"the image array {image.shape} has no pixels")
        return np.ascontiguousarray(image)
    if not isinstance(image, (str, os.PathLike)) or not isinstance(os.fspath(image), str):
        raise HeadposeError(f"expected an image file or an RGB array, got {type(image).__name__}")
    problem = file_problem(image)
    if problem:
        raise HeadposeError(f"image {image} {problem}")
    pixels = decode_rgb(image, upright=True)
    if pixels is None:
        raise HeadposeError(f"{image}: not a readable image")
    return pixels


def protocol_landmark_box(
    face: FaceBox, calibration: BoxCalibration, protocol: CropProtocol
) -> Box:
    """The tight landmark box a face stands for (its box through the detector's
    ``calibration``), in the coordinates crop ``protocol`` frames."""
    return protocol.from_pixel_coordinates(calibration.landmark_box(face))


def detected_faces(detector: FaceDetector, image_rgb: np.ndarray) -> list[FaceBox]:
    """The usable faces a detector finds (:func:`usable_box`: a 10000x50 panorama shrunk for
    detection gives a degenerate one)."""
    height, width = image_rgb.shape[:2]
    return [face for face in detector.detect(image_rgb) if usable_box(face.box, width, height)]


def build_detector(
    boxes: str | None,
    detector: str,
    detector_model: str | None = None,
    min_score: float | None = None,
) -> FaceDetector | None:
    """The detector asked for (None with a boxes file); offline without a cached YuNet model,
    one warning line and the Haar detector."""
    if boxes:
        return None
    try:
        return make_detector(detector, detector_model, min_score)
    except ModelUnavailable as error:
        print(f"warning: {error}; using the haar detector instead", file=sys.stderr)
        return make_detector("haar")


def _given_face(box: Sequence[float]) -> FaceBox:
    """A given box ``(x0, y0, x1, y1)`` as a face, checked."""
    try:
        values = [float(v) for v in box] if isinstance(box, (Sequence, np.ndarray)) else []
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise HeadposeError(f"a face box is 4 finite numbers (x0, y0, x1, y1), got {shorten(box)}")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise HeadposeError(f"face box {tuple(values)} is empty (x1 <= x0 or y1 <= y0)")
    return FaceBox(x0, y0, x1, y1, math.nan)


class HeadPoseModel:
    """A loaded model (:func:`load`): predicts yaw, pitch and roll in degrees of faces in images
    (:meth:`predict`) and of ready crops (:meth:`predict_crops`), ``batch_size`` crops per
    model call."""

    def __init__(self, loaded: LoadedModel, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.loaded = loaded
        self.batch_size = check_argument("batch_size", batch_size, SCHEMA["batch_size"])
        self._detectors: dict[tuple[str, float | None], FaceDetector] = {}
        self._detectors_lock = threading.Lock()  # two threads asking at once make one detector

    def __repr__(self) -> str:
        return (
            f"HeadPoseModel({str(self.path)!r}, {self.image_size} px, crop {self.crop_protocol}, "
            f"runs on {self.runs_on})"
        )

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def description(self) -> ModelDescription:
        """Input side, normalisation, crop protocol, head and training fingerprint."""
        return self.loaded.description

    @property
    def image_size(self) -> int:
        """The side in pixels of the square crops the model reads."""
        return self.description.image_size

    @property
    def crop_protocol(self) -> CropProtocol:
        """The crop protocol faces are framed by (its ``name`` is what the model records)."""
        return self.description.crop_protocol

    @property
    def normalization(self) -> Normalization:
        return self.description.normalization

    @property
    def runs_on(self) -> str:
        """Where the model runs (a torch device, or ONNX Runtime and its precision)."""
        return self.loaded.runs_on

    def crops(
        self,
        image_rgb: np.ndarray,
        faces: Iterable[FaceBox],
        calibration: BoxCalibration = IDENTITY_CALIBRATION,
        source: str = "image",
    ) -> np.ndarray:
        """The model's uint8 crops ``(N, S, S, 3)`` of ``faces`` in an RGB image: each face box
        (through a detector's ``calibration``; the identity for tight landmark boxes) framed as
        the training crops of the model's crop protocol framed faces, on average
        (:meth:`headpose.crops.protocols.CropProtocol.prediction_crop`). A face box wholly
        outside the image, or more than one image size beyond its edge, is refused before any
        pixel is cut (:func:`headpose.datasets.labels.check_box`; the message names ``source``
        and the box)."""
        size, protocol = self.image_size, self.crop_protocol
        faces = list(faces)
        height, width = image_rgb.shape[:2]
        for face in faces:
            check_box(face.box, (width, height), source, "face box")
        boxes = [protocol_landmark_box(face, calibration, protocol) for face in faces]
        crops = [protocol.prediction_crop(image_rgb, box, size) for box in boxes]
        return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)

    def predict_crops(self, crops: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 3)`` yaw, pitch, roll degrees of ready crops: uint8 RGB ``(N, S, S, 3)`` (or one
        ``(S, S, 3)``, or a list of them) at the model's side ``S`` (:attr:`image_size`).

        Crops are not resized: a crop of another side (in a list, the first one that differs,
        by its index) is one HeadposeError line; :meth:`crops` makes crops of any face."""
        size = self.image_size
        expected = f"uint8 RGB of shape (N, {size}, {size}, 3) for this model"
        hint = "(HeadPoseModel.crops makes them from an image)"
        if isinstance(crops, (list, tuple)):
            crops = _same_side_crops(crops, size, hint)
        elif not isinstance(crops, (np.ndarray, torch.Tensor)):
            raise HeadposeError(
                f"crops must be {expected}, or a list of (S, S, 3) crops; got "
                f"{type(crops).__name__} {hint}"
            )
        batch = crops[None] if crops.ndim == 3 else crops
        if batch.ndim > 0 and len(batch) == 0:
            return np.zeros((0, 3))
        if tuple(batch.shape[1:]) != (size, size, 3) or batch.dtype not in (np.uint8, torch.uint8):
            raise HeadposeError(
                f"crops must be {expected}, got {batch.dtype} {tuple(batch.shape)} {hint}"
            )
        return crop_angles(
            self.loaded.predict, batch, self.normalization, self.loaded.device, self.batch_size
        )

    def detector(
        self, name: str = DEFAULT_DETECTOR, min_score: float | None = None
    ) -> FaceDetector:
        """The face detector ``name`` (made once per model; YuNet is downloaded on first use,
        and offline without a cached copy the Haar detector stands in, with a warning line)."""
        if not isinstance(name, str):
            raise HeadposeError(f"detector {shorten(name)}; expected a detector's name or object")
        if min_score is not None:
            check_argument("min_score", min_score, FINITE_NUMBER)
        key = (name, min_score)
        with self._detectors_lock:
            if key not in self._detectors:
                self._detectors[key] = build_detector(None, name, None, min_score)
            return self._detectors[key]

    def predict(
        self,
        image: np.ndarray | str | os.PathLike,
        boxes: Iterable[Sequence[float]] | None = None,
        *,
        detector: str | FaceDetector = DEFAULT_DETECTOR,
        min_score: float | None = None,
        labels: Iterable[Sequence[float]] | None = None,
    ) -> list[Pose]:
        """The pose of every face in ``image`` (an RGB uint8 array or an image file): the faces
        ``detector`` (a name, or a detector object) finds, or ``boxes``, tight face boxes ``(x0,
        y0, x1, y1)`` in pixels (the box of the 68 landmarks: brow to chin, ear to ear). A box
        may lie partly outside the image, not wholly, nor more than one image size beyond its
        edge (:meth:`crops`). ``labels``, one true ``(yaw, pitch, roll)`` in degrees per box
        (with ``boxes`` only), give each pose its :class:`PoseError` (``Pose.error``). Safe to
        call from several threads at once (see the module docstring)."""
        pixels = read_image(image)
        given_labels = None
        if labels is not None:
            if boxes is None:
                raise HeadposeError(
                    "labels: given with boxes only, one (yaw, pitch, roll) per box (a detector's "
                    "faces have no known order)"
                )
            given_labels = [_label(label) for label in labels]
        if boxes is not None:
            if isinstance(boxes, (str, bytes)) or not isinstance(boxes, Iterable):
                raise HeadposeError(
                    f"boxes {shorten(boxes)}; expected face boxes (x0, y0, x1, y1), e.g. [(10, 20, "
                    "110, 140)]"
                )
            faces, calibration = [_given_face(box) for box in boxes], IDENTITY_CALIBRATION
            if given_labels is not None and len(given_labels) != len(faces):
                raise HeadposeError(
                    f"labels: {len(given_labels)} given for {len(faces)} boxes; expected one per "
                    "box"
                )
        else:
            found = self.detector(detector, min_score) if isinstance(detector, str) else detector
            if not callable(getattr(found, "detect", None)):
                raise HeadposeError(
                    f"detector {shorten(detector)}; expected a detector's name or an object with "
                    "detect(image_rgb) and calibration"
                )
            faces, calibration = detected_faces(found, pixels), found.calibration
        source = "image array" if isinstance(image, np.ndarray) else os.fspath(image)
        angles = self.predict_crops(self.crops(pixels, faces, calibration, source))
        poses = [
            Pose(
                float(yaw),
                float(pitch),
                float(roll),
                tuple(float(v) for v in face.box),
                None if math.isnan(face.score) else float(face.score),
            )
            for face, (yaw, pitch, roll) in zip(faces, angles, strict=True)
        ]
        if given_labels is None:
            return poses
        return [
            dataclasses.replace(pose, error=pose.error_against(label))
            for pose, label in zip(poses, given_labels, strict=True)
        ]


def load(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    device: str | None = None,
    runtime: str = "auto",
    crop_protocol: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_size: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    card: str | os.PathLike | ModelCard | None = None,
) -> HeadPoseModel:
    """Load a ``.pt`` checkpoint, an ``.onnx`` file or a published model by name (``"fsanet"``:
    its files fetched on first use) to predict head poses with; a list of them is averaged as
    one model (the mean of their angles).

    ``device``: ``cpu``, ``cuda``, ``cuda:1`` ... (default: CUDA when available, else the CPU;
    ONNX Runtime runs on the CPU); ``runtime``: ``auto`` (ONNX Runtime for ``.onnx`` files, else
    PyTorch), ``torch`` or ``onnx`` (a checkpoint is exported first). ``crop_protocol``, the name
    of a registered crop protocol, replaces the one the model was trained on; ``mean``, ``std``
    (and ``crop_protocol``, and ``image_size`` for an input of free size) are needed only for an
    ``.onnx`` exported elsewhere, which records none of them; or ``card``, a model card (its
    YAML file, or :class:`~headpose.inference.card.ModelCard`) saying how to feed the file and
    read its answer (``docs/design.md``, "Model cards"). ``image_size`` (32 to 1024) and
    ``batch_size`` (1 to 4096) follow the rules of ``params.yaml`` and the CLI's options.
    """
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    for each in paths:
        if not isinstance(each, (str, os.PathLike)) or not isinstance(os.fspath(each), str):
            raise HeadposeError(
                f"path {shorten(each)}; expected a model file's path (or a published model's "
                f"name) as a str or os.PathLike, or a list of them, got {type(each).__name__}"
            )
    if not paths:
        raise HeadposeError("path []; expected at least one model file to average")
    if image_size is not None:
        check_argument("image_size", image_size, SCHEMA["image_size"])
    check_argument("batch_size", batch_size, SCHEMA["batch_size"])
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and (
            isinstance(values, (str, bytes))
            or not isinstance(values, (Sequence, np.ndarray))
            or not all(
                isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                for v in values
            )
        ):
            raise HeadposeError(f"{name} {shorten(values)}; expected 3 numbers (R, G, B)")
    protocol = None if crop_protocol is None else get_protocol(crop_protocol, "crop_protocol")
    loaded = open_model(
        path,
        runtime,
        device,
        image_size=image_size,
        mean=None if mean is None else tuple(mean),
        std=None if std is None else tuple(std),
        crop_protocol=protocol,
        card=card,
    )
    return HeadPoseModel(loaded, batch_size)


def _same_side_crops(crops: Sequence, size: int, hint: str) -> np.ndarray:
    """A list of ``(S, S, 3)`` uint8 crops as one batch; the first crop of another shape or
    dtype refused by its index (crops are not resized)."""
    arrays = []
    for index, crop in enumerate(crops):
        try:
            array = np.asarray(crop)
        except (TypeError, ValueError):
            array = np.zeros(())
        if array.shape != (size, size, 3) or array.dtype != np.uint8:
            raise HeadposeError(
                f"crops[{index}] is {array.dtype} {array.shape}; every crop must be uint8 "
                f"({size}, {size}, 3) for this model, crops are not resized {hint}"
            )
        arrays.append(array)
    return np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
