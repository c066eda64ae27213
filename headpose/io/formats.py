"""Dataset I/O: the on-disk formats of 300W_LP and AFLW2000 (``NAME.jpg`` + ``NAME.mat``).

This module is the only place that reads or writes samples, so the synthetic generator, the
augmentation and the training/evaluation code all see the same format. Every failure (missing
folder, corrupt image, .mat without ``Pose_Para``, NaN angles) becomes a HeadposeError naming the
file and what was expected.

.mat keys used: ``Pose_Para`` (1x7 float32: pitch, yaw, roll in radians, tx, ty, tz, scale),
``pt2d`` (2xN image landmarks, 1-based; AFLW2000 marks invisible ones with negative
coordinates), ``pt3d_68`` (3x68, AFLW2000 only) and ``roi`` (1x4).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from headpose.errors import HeadposeError
from headpose.geometry import pose_angles_deg
from headpose.io.files import atomic_path

MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by headpose"
IMAGE_SUFFIX = ".jpg"
ANNOTATION_SUFFIX = ".mat"


@dataclass(frozen=True)
class Annotation:
    """The labels of one sample, validated."""

    pose_para: np.ndarray  # (7,) float64 or (3,)+ as stored; angles in radians
    landmarks_xy: np.ndarray  # (N, 2) visible 2D landmarks, 1-based image coordinates

    @property
    def angles_deg(self) -> tuple[float, float, float]:
        """(yaw_deg, pitch_deg, roll_deg)."""
        return pose_angles_deg(self.pose_para)


def visible_landmarks(points_xy: np.ndarray) -> np.ndarray:
    """Mask of the real landmarks of an (N, 2) array: AFLW2000 stores invisible ones as
    placeholders with a negative coordinate, such as ``(-1, 452)``."""
    return np.all(np.isfinite(points_xy), axis=1) & np.all(points_xy >= 0, axis=1)


def find_sample_stems(root: str | os.PathLike, recursive: bool) -> tuple[list[str], list[str]]:
    """Scan ``root`` for ``.jpg`` files and return (stems with a .mat beside them, orphan stems).

    Stems are POSIX paths relative to ``root`` without extension, sorted. ``recursive`` scans
    subfolders (300W_LP layout); otherwise only ``root`` itself (AFLW2000 layout).
    """
    folder = Path(root)
    if not folder.is_dir():
        raise HeadposeError(f"dataset folder {folder} does not exist or is not a folder")
    pattern = f"**/*{IMAGE_SUFFIX}" if recursive else f"*{IMAGE_SUFFIX}"
    paired, orphans = [], []
    for image_path in sorted(folder.glob(pattern)):
        stem = image_path.relative_to(folder).with_suffix("").as_posix()
        (paired if image_path.with_suffix(ANNOTATION_SUFFIX).is_file() else orphans).append(stem)
    return paired, orphans


def read_mat(path: str | os.PathLike) -> dict:
    """Load a .mat file, raising a HeadposeError that names the file if it is missing or corrupt."""
    try:
        return scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise HeadposeError(f"{path}: annotation file not found") from None
    except Exception as error:  # scipy raises several types for corrupt files
        raise HeadposeError(f"{path}: not a readable MATLAB .mat file ({error})") from None


def read_annotation(path: str | os.PathLike) -> Annotation:
    """Read and validate the labels of one sample from its .mat file.

    Requires a finite ``Pose_Para`` with at least 3 values and at least 2 visible ``pt2d``
    landmarks (``pt3d_68[:2]`` is used when ``pt2d`` is absent).
    """
    mat = read_mat(path)
    if "Pose_Para" not in mat:
        raise HeadposeError(f"{path}: no Pose_Para in the .mat file")
    pose = np.asarray(mat["Pose_Para"], dtype=np.float64).ravel()
    if pose.size < 3:
        raise HeadposeError(f"{path}: Pose_Para has {pose.size} values, expected at least 3")
    if not np.all(np.isfinite(pose[:3])):
        raise HeadposeError(f"{path}: Pose_Para angles are not finite: {pose[:3].tolist()}")
    if "pt2d" in mat:
        points = np.asarray(mat["pt2d"], dtype=np.float64)
    elif "pt3d_68" in mat:
        points = np.asarray(mat["pt3d_68"], dtype=np.float64)[:2]
    else:
        raise HeadposeError(f"{path}: no landmarks (pt2d or pt3d_68) in the .mat file")
    if points.ndim != 2 or points.shape[0] != 2:
        raise HeadposeError(f"{path}: pt2d has shape {points.shape}, expected 2xN")
    landmarks = points.T
    visible = visible_landmarks(landmarks)
    if visible.sum() < 2:
        raise HeadposeError(f"{path}: fewer than 2 visible landmarks in pt2d")
    return Annotation(pose_para=pose, landmarks_xy=landmarks[visible])


def decode_rgb(path: str | os.PathLike) -> np.ndarray | None:
    """Decode an image file to an RGB uint8 array (H, W, 3), or None when it is no image."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a sample's image to an RGB uint8 array (H, W, 3), or raise naming the file."""
    if not Path(path).is_file():
        raise HeadposeError(f"{path}: image file not found")
    image = decode_rgb(path)
    if image is None:
        raise HeadposeError(f"{path}: not a decodable image")
    return image


def write_jpeg(path: str | os.PathLike, image_rgb: np.ndarray, quality: int = 95) -> None:
    """Encode an RGB uint8 image as JPEG and write it atomically."""
    ok, encoded = cv2.imencode(
        IMAGE_SUFFIX,
        cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, quality],
    )
    if not ok:
        raise HeadposeError(f"{path}: JPEG encoding failed")
    with atomic_path(path) as temp:
        encoded.tofile(str(temp))


def write_mat(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write a .mat file atomically (MATLAB 5 format, as scipy.io.loadmat reads it back).

    savemat puts the current time in the 116-byte header text; it is replaced by a fixed text
    so the same arrays always give the same bytes (reproducible DVC hashes).
    """
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        scipy.io.savemat(handle, arrays, do_compression=False)
        handle.seek(0)
        handle.write(MAT_HEADER_TEXT.ljust(116))


def write_sample(
    stem_path: str | os.PathLike,
    image_rgb: np.ndarray,
    arrays: dict[str, np.ndarray],
    jpeg_quality: int = 95,
) -> None:
    """Write ``STEM.jpg`` and ``STEM.mat`` (the .mat last, so a pair is complete once it exists)."""
    stem = Path(stem_path)
    write_jpeg(stem.with_name(stem.name + IMAGE_SUFFIX), image_rgb, jpeg_quality)
    write_mat(stem.with_name(stem.name + ANNOTATION_SUFFIX), arrays)


def angles_within(angles_deg: tuple[float, ...], max_angle_deg: float) -> bool:
    """True when every angle's magnitude is at most ``max_angle_deg`` (the 1969-image protocol)."""
    return all(math.isfinite(a) and abs(a) <= max_angle_deg for a in angles_deg)


def read_list(path: str | os.PathLike, allow_empty: bool = False) -> list[str]:
    """Read a sample list: one sample path without extension per line; blank lines are ignored.

    Raises a HeadposeError naming the file when it is missing, unreadable or (unless
    ``allow_empty``) holds no samples.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HeadposeError(
            f"sample list {file} does not exist (run the filelists/augment stages first)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise HeadposeError(f"cannot read sample list {file}: {error}") from None
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    if not stems and not allow_empty:
        raise HeadposeError(f"sample list {file} is empty: expected one sample path per line")
    return stems
