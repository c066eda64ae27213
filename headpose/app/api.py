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

Angles are degrees in the project's convention (``docs/conventions.md``): yaw, pitch, roll, as
the datasets label them. Bad input (a missing or unreadable file, an array of the wrong shape, an
``.onnx`` file that records no metadata and was given no values) is one HeadposeError line.
"""

from __future__ import annotations

import math
import os
import sys
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
from headpose.errors import HeadposeError
from headpose.inference.batches import crop_angles
from headpose.inference.card import ModelCard
from headpose.inference.loading import LoadedModel, open_model
from headpose.inference.metadata import ModelDescription
from headpose.io.files import file_problem
from headpose.io.images import decode_rgb
from headpose.models.registry import Normalization

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Pose:
    """One face's head pose in degrees; ``box`` is the face's box ``(x0, y0, x1, y1)`` in pixels
    (the detector's or the one given) and ``score`` the detector's confidence (None for a given
    box)."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    box: tuple[float, float, float, float] | None = None
    score: float | None = None


def read_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An RGB uint8 ``(H, W, 3)`` image: the array itself, or a file decoded upright (as a
    viewer shows it)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise HeadposeError(
                f"an image array must be RGB uint8 of shape (H, W, 3), got {image.dtype} "
                f"{image.shape}"
            )
        return image
    if not isinstance(image, (str, os.PathLike)):
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
    values = [float(v) for v in box] if isinstance(box, (Sequence, np.ndarray)) else []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise HeadposeError(f"a face box is 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise HeadposeError(f"face box {tuple(values)} is empty (x1 <= x0 or y1 <= y0)")
    return FaceBox(x0, y0, x1, y1, math.nan)


class HeadPoseModel:
    """A loaded model (:func:`load`): predicts yaw, pitch and roll in degrees of faces in images
    (:meth:`predict`) and of ready crops (:meth:`predict_crops`), ``batch_size`` crops per
    model call."""

    def __init__(self, loaded: LoadedModel, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise HeadposeError(f"batch_size {batch_size}: expected at least 1")
        self.loaded = loaded
        self.batch_size = batch_size
        self._detectors: dict[tuple[str, float | None], FaceDetector] = {}

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
    ) -> np.ndarray:
        """The model's uint8 crops ``(N, S, S, 3)`` of ``faces`` in an RGB image: each face box
        (through a detector's ``calibration``; the identity for tight landmark boxes) framed as
        the training crops of the model's crop protocol framed faces, on average
        (:meth:`headpose.crops.protocols.CropProtocol.prediction_crop`)."""
        size, protocol = self.image_size, self.crop_protocol
        boxes = [protocol_landmark_box(face, calibration, protocol) for face in faces]
        crops = [protocol.prediction_crop(image_rgb, box, size) for box in boxes]
        return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)

    def predict_crops(self, crops: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 3)`` yaw, pitch, roll degrees of ready crops: uint8 RGB ``(N, S, S, 3)`` (or one
        ``(S, S, 3)``, or a list of them) at the model's side ``S`` (:attr:`image_size`)."""
        if isinstance(crops, (list, tuple)):
            crops = np.stack([np.asarray(crop) for crop in crops]) if crops else np.zeros((0,))
        batch = crops if isinstance(crops, torch.Tensor) else np.asarray(crops)
        if batch.ndim == 3:
            batch = batch[None]
        size = self.image_size
        if len(batch) == 0:
            return np.zeros((0, 3))
        if tuple(batch.shape[1:]) != (size, size, 3) or batch.dtype not in (np.uint8, torch.uint8):
            raise HeadposeError(
                f"crops must be uint8 RGB of shape (N, {size}, {size}, 3) for this model, got "
                f"{batch.dtype} {tuple(batch.shape)} (HeadPoseModel.crops makes them from an image)"
            )
        return crop_angles(
            self.loaded.predict, batch, self.normalization, self.loaded.device, self.batch_size
        )

    def detector(
        self, name: str = DEFAULT_DETECTOR, min_score: float | None = None
    ) -> FaceDetector:
        """The face detector ``name`` (made once per model; YuNet is downloaded on first use,
        and offline without a cached copy the Haar detector stands in, with a warning line)."""
        key = (name, min_score)
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
    ) -> list[Pose]:
        """The pose of every face in ``image`` (an RGB uint8 array or an image file): the faces
        ``detector`` (a name, or a detector object) finds, or ``boxes``, tight face boxes ``(x0,
        y0, x1, y1)`` in pixels (the box of the 68 landmarks: brow to chin, ear to ear)."""
        pixels = read_image(image)
        if boxes is not None:
            faces, calibration = [_given_face(box) for box in boxes], IDENTITY_CALIBRATION
        else:
            found = self.detector(detector, min_score) if isinstance(detector, str) else detector
            faces, calibration = detected_faces(found, pixels), found.calibration
        angles = self.predict_crops(self.crops(pixels, faces, calibration))
        return [
            Pose(
                float(yaw),
                float(pitch),
                float(roll),
                tuple(float(v) for v in face.box),
                None if math.isnan(face.score) else float(face.score),
            )
            for face, (yaw, pitch, roll) in zip(faces, angles, strict=True)
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
    read its answer (``docs/design.md``, "Model cards").
    """
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
