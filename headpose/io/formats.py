"""Dataset I/O: the on-disk formats of 300W_LP and AFLW2000 (``NAME.jpg`` + ``NAME.mat``).

This module is the only place that reads or writes samples, so the synthetic generator, the
augmentation and the training/evaluation code all see the same format. Every failure (missing
folder, corrupt image, .mat without ``Pose_Para``, NaN angles) becomes a HeadposeError naming the
file and what was expected.

.mat keys used: ``Pose_Para`` (1x7 float32: pitch, yaw, roll in radians, tx, ty, tz, scale),
``pt2d`` (2xN image landmarks, 1-based; AFLW2000 marks invisible ones with negative
coordinates), ``pt3d_68`` (3x68, AFLW2000 only) and ``roi`` (1x4).

**The one validation of a sample** is :func:`read_sample_header` (``read_sample`` adds the
decoded image): every reader (the file lists, 300W_AUG, the training and evaluation input,
``headpose evaluate --data FOLDER``) calls it, so a sample accepted by one is accepted by all.
It checks, before anything is decoded or resized:

* the .mat: the keys exist, hold real numbers (no text, cell arrays or complex values), have the
  expected shapes, are finite, and the angles are within :data:`MAX_ABS_ANGLE_DEG`;
* the image: its dimensions, read from the file header by Pillow's JPEG/PNG/BMP readers
  (:func:`image_header_size`, no decoding), are positive, at most :data:`MAX_IMAGE_SIDE_PX` per
  side and :data:`MAX_IMAGE_PIXELS` in all;
* the landmarks against the image: every visible landmark lies within one image size of the
  image, and their box is at least one pixel wide and high, so every crop is bounded and
  non-empty.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.io
from PIL import BmpImagePlugin, ImageFile, JpegImagePlugin, PngImagePlugin

from headpose.errors import HeadposeError
from headpose.geometry import pose_angles_deg
from headpose.io.files import atomic_path, file_problem

MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by headpose"
IMAGE_SUFFIX = ".jpg"
ANNOTATION_SUFFIX = ".mat"
# Largest image accepted anywhere (2^28 = 268 million pixels, 805 MB as RGB); OpenCV's own
# limit is 2^30. Checked on the header, before decoding.
MAX_IMAGE_PIXELS = 2**28
# Longest accepted side: OpenCV's warps and remaps need sides below SHRT_MAX (32767).
MAX_IMAGE_SIDE_PX = 2**15 - 2
# Ten full turns: beyond it a value is no angle the datasets write (the real AFLW2000's largest
# is 972 deg, among the outliers the +-99 deg filter drops).
MAX_ABS_ANGLE_DEG = 3600.0
# Characters that end a line for str.splitlines (and the tab of the .tsv tables): a sample
# name holding one cannot be written to a list.
LINE_BREAKING_CHARACTERS = "\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029"


@dataclass(frozen=True)
class Annotation:
    """The labels of one sample, validated."""

    pose_para: np.ndarray  # (7,) float64 or (3,)+ as stored; angles in radians
    landmarks_xy: np.ndarray  # (N, 2) visible 2D landmarks, 1-based image coordinates
    arrays: dict[str, np.ndarray]  # the validated keys (Pose_Para, pt2d, pt3d_68), float64

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
        # exists(), not is_file(): a .mat that is a FIFO or a folder is reported by its reader
        (paired if image_path.with_suffix(ANNOTATION_SUFFIX).exists() else orphans).append(stem)
    return paired, orphans


def _refuse_special_file(path: str | os.PathLike, what: str) -> None:
    """A FIFO, socket or device named like a sample file would block or feed endless bytes to
    the reader, a folder fails in it: refuse either in one line (a missing file is left to the
    reader's own message)."""
    problem = file_problem(path)
    if problem and problem.startswith(("is not a regular file", "is a folder")):
        raise HeadposeError(f"{path}: {problem}; expected an {what} file")


def read_mat(path: str | os.PathLike) -> dict:
    """Load a .mat file, raising a HeadposeError that names the file if it is missing or corrupt."""
    _refuse_special_file(path, "annotation (.mat)")
    try:
        return scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise HeadposeError(f"{path}: annotation file not found") from None
    except Exception as error:  # scipy raises several types for corrupt files
        raise HeadposeError(f"{path}: not a readable MATLAB .mat file ({error})") from None


def _numeric(mat: dict, key: str, path) -> np.ndarray:
    """``mat[key]`` as a float64 array, refusing text, cell arrays, structs and complex values."""
    value = mat[key]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        kind = getattr(value, "dtype", type(value).__name__)
        raise HeadposeError(f"{path}: {key} holds {kind} values, expected real numbers")
    return value.astype(np.float64)


def _pose(mat: dict, path) -> np.ndarray:
    if "Pose_Para" not in mat:
        raise HeadposeError(f"{path}: no Pose_Para in the .mat file")
    pose = _numeric(mat, "Pose_Para", path).ravel()
    if not 3 <= pose.size <= 7:
        raise HeadposeError(f"{path}: Pose_Para has {pose.size} values, expected 3 to 7")
    if not np.all(np.isfinite(pose)):
        raise HeadposeError(f"{path}: Pose_Para values are not finite: {pose.tolist()}")
    largest_deg = float(np.degrees(np.abs(pose[:3]).max()))
    if largest_deg > MAX_ABS_ANGLE_DEG:
        raise HeadposeError(
            f"{path}: Pose_Para angle of {largest_deg:.4g} deg is no rotation angle in radians "
            f"(at most {MAX_ABS_ANGLE_DEG:g} deg accepted)"
        )
    return pose


def _points(mat: dict, key: str, rows: int, path) -> np.ndarray:
    """A ``rows`` x N landmark array with N >= 2."""
    points = _numeric(mat, key, path)
    if points.ndim != 2 or points.shape[0] != rows or points.shape[1] < 2:
        raise HeadposeError(f"{path}: {key} has shape {points.shape}, expected {rows}xN, N >= 2")
    return points


def read_annotation(
    path: str | os.PathLike, image_size_wh: tuple[int, int] | None = None
) -> Annotation:
    """Read and validate the labels of one sample from its .mat file.

    Requires a finite ``Pose_Para`` of 3 to 7 real numbers whose angles are within
    :data:`MAX_ABS_ANGLE_DEG`, and a finite ``2xN`` ``pt2d`` (``pt3d_68[:2]`` when ``pt2d`` is
    absent; ``3xN`` ``pt3d_68`` is checked too when present) with at least 2 visible landmarks
    whose box is at least one pixel wide and high. With ``image_size_wh`` (width, height of the
    sample's image) every point, invisible placeholders included (the published crop protocol
    frames them all), must lie within one image size of the image.
    """
    mat = read_mat(path)
    arrays = {"Pose_Para": _pose(mat, path)}
    if "pt3d_68" in mat:
        arrays["pt3d_68"] = _points(mat, "pt3d_68", 3, path)
    if "pt2d" in mat:
        arrays["pt2d"] = _points(mat, "pt2d", 2, path)
        landmarks = arrays["pt2d"].T
    elif "pt3d_68" in mat:
        landmarks = arrays["pt3d_68"][:2].T
    else:
        raise HeadposeError(f"{path}: no landmarks (pt2d or pt3d_68) in the .mat file")
    if "pt3d_68" in arrays and not np.all(np.isfinite(arrays["pt3d_68"])):
        raise HeadposeError(f"{path}: pt3d_68 holds values that are not finite")
    if not np.all(np.isfinite(landmarks)):  # the published crop takes the box of every point
        raise HeadposeError(f"{path}: pt2d holds values that are not finite")
    stored = landmarks
    visible = visible_landmarks(landmarks)
    if visible.sum() < 2:
        raise HeadposeError(f"{path}: fewer than 2 visible landmarks in pt2d")
    landmarks = landmarks[visible]
    extent = landmarks.max(axis=0) - landmarks.min(axis=0)
    if extent.min() < 1:
        raise HeadposeError(
            f"{path}: the visible landmarks span {extent[0]:g} x {extent[1]:g} pixels; a face box "
            "needs at least 1 x 1"
        )
    if image_size_wh is not None:
        width, height = image_size_wh
        if np.any(stored < (-width, -height)) or np.any(stored > (2 * width, 2 * height)):
            worst = stored[np.argmax(np.abs(stored / (width, height) - 0.5).max(axis=1))]
            raise HeadposeError(
                f"{path}: pt2d point ({worst[0]:.6g}, {worst[1]:.6g}) lies far outside the "
                f"{width}x{height} image (at most one image size beyond its edge, placeholders "
                "of invisible points included)"
            )
        if np.any(landmarks > (2 * width, 2 * height)):
            worst = landmarks[np.argmax((landmarks / (width, height)).max(axis=1))]
            raise HeadposeError(
                f"{path}: landmark ({worst[0]:.6g}, {worst[1]:.6g}) lies far outside the "
                f"{width}x{height} image (at most one image size beyond its edge)"
            )
    return Annotation(pose_para=arrays["Pose_Para"], landmarks_xy=landmarks, arrays=arrays)


def _unreadable_header(name: str, error: BaseException) -> str:
    """One line on a JPEG/PNG/BMP header Pillow cannot read (its reason on one line)."""
    reason = " ".join(str(error).split()) or type(error).__name__
    return f"not a readable {name} header (truncated or corrupt: {reason})"


# The header readers, by the signature a file starts with. Pillow's own ``Image.open`` would
# pick them the same way, but it applies Pillow's decompression-bomb limit (an error above
# 2 x 89.5 million pixels, a warning above 89.5 million) before the size is known to the caller,
# and this module has limits of its own (:data:`MAX_IMAGE_PIXELS`, :data:`MAX_IMAGE_SIDE_PX`)
# whose message names the claimed width x height; so the format's reader is called directly.
# Each reads the header only (JPEG: the segments up to the frame header; PNG: IHDR, CRC checked;
# BMP: the info header); no pixel is decoded.
_HEADER_READERS: dict[bytes, tuple[str, type[ImageFile.ImageFile]]] = {
    b"\xff\xd8": ("JPEG", JpegImagePlugin.JpegImageFile),
    b"\x89PNG\r\n\x1a\n": ("PNG", PngImagePlugin.PngImageFile),
    b"BM": ("BMP", BmpImagePlugin.BmpImageFile),
}
_SIGNATURE_BYTES = max(map(len, _HEADER_READERS))


def _header_reader(start: bytes) -> tuple[str, type[ImageFile.ImageFile]] | None:
    """(format name, Pillow reader) of a file starting with ``start``, or None."""
    return next(
        (reader for signature, reader in _HEADER_READERS.items() if start.startswith(signature)),
        None,
    )


def image_header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) an image file's header claims, read by Pillow without decoding (JPEG,
    PNG, BMP); None for another format. Raises a HeadposeError naming the file when it cannot
    be read, its JPEG/PNG/BMP header is truncated or corrupt, or it claims no pixels, a side
    over :data:`MAX_IMAGE_SIDE_PX` or more than :data:`MAX_IMAGE_PIXELS` pixels."""
    _refuse_special_file(path, "image")
    try:
        with open(path, "rb") as handle:
            reader = _header_reader(handle.read(_SIGNATURE_BYTES))
            if reader is None:
                return None
            name, image_file = reader
            handle.seek(0)
            try:
                with image_file(handle) as image:
                    size = image.size
            except OSError as error:
                if error.errno is not None:  # the file system's error, not Pillow's
                    raise
                raise HeadposeError(f"{path}: {_unreadable_header(name, error)}") from None
            except Exception as error:  # SyntaxError, ValueError, ...: a corrupt header
                raise HeadposeError(f"{path}: {_unreadable_header(name, error)}") from None
    except IsADirectoryError:
        raise HeadposeError(f"{path}: is a folder, not an image file") from None
    except FileNotFoundError:
        raise HeadposeError(f"{path}: image file not found (or a broken link)") from None
    except OSError as error:
        raise HeadposeError(f"{path}: image not readable: {error.strerror}") from None
    width, height = size
    if width < 1 or height < 1:
        raise HeadposeError(f"{path}: the image header claims {width}x{height} pixels")
    if max(width, height) > MAX_IMAGE_SIDE_PX:
        raise HeadposeError(
            f"{path}: the image header claims {width}x{height} pixels; at most "
            f"{MAX_IMAGE_SIDE_PX} are accepted per side"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise HeadposeError(
            f"{path}: the image header claims {width}x{height} = {width * height:,} pixels, "
            f"more than the {MAX_IMAGE_PIXELS:,} accepted"
        )
    return width, height


def decode_rgb(path: str | os.PathLike, upright: bool = False) -> np.ndarray | None:
    """Decode an image file to an RGB uint8 array (H, W, 3), or None when it is no image.

    One rule for EXIF orientation: a dataset's image is used as its pixels are stored
    (``upright=False``, as the published code reads them: its landmarks and pose refer to those
    pixels), a photo given to ``headpose predict`` is turned upright as a viewer shows it
    (``upright=True``). The header is checked first (:func:`image_header_size`): a file that is
    no readable image file, or claims too many pixels, raises a HeadposeError naming it.
    """
    image_header_size(path)
    data = np.fromfile(str(path), dtype=np.uint8)
    flags = cv2.IMREAD_COLOR if upright else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(data, flags) if data.size else None
    except cv2.error:  # OpenCV's own size limit, for formats whose header is not read here
        return None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a sample's image to an RGB uint8 array (H, W, 3), its pixels as stored (EXIF
    orientation ignored: the labels refer to them), or raise naming the file."""
    if not Path(path).is_file():
        raise HeadposeError(f"{path}: image file not found")
    image = decode_rgb(path)
    if image is None:
        raise HeadposeError(f"{path}: not a decodable image")
    return image


def sample_header(stem: str | os.PathLike) -> tuple[Annotation, tuple[int, int]]:
    """Validate the sample ``STEM.jpg`` + ``STEM.mat`` without decoding its pixels: (labels,
    (width, height) of the image header). Raises a HeadposeError naming the file at fault."""
    image_path = f"{stem}{IMAGE_SUFFIX}"
    size = image_header_size(image_path)
    if size is None:
        raise HeadposeError(f"{image_path}: not a decodable JPEG (no JPEG header)")
    return read_annotation(f"{stem}{ANNOTATION_SUFFIX}", size), size


def read_sample(stem: str | os.PathLike) -> tuple[np.ndarray, Annotation]:
    """(RGB image, labels) of the validated sample ``STEM.jpg`` + ``STEM.mat``
    (:func:`sample_header`, then the decode); raises a HeadposeError naming the file."""
    annotation, (width, height) = sample_header(stem)
    image = read_image(f"{stem}{IMAGE_SUFFIX}")
    if image.shape[:2] != (height, width):
        raise HeadposeError(
            f"{stem}{IMAGE_SUFFIX}: decodes to {image.shape[1]}x{image.shape[0]} pixels, but its "
            f"header claims {width}x{height}"
        )
    return image, annotation


def listable_name(name: str) -> bool:
    """Whether a sample name can be a line of a list (no line break, no tab)."""
    return not any(character in LINE_BREAKING_CHARACTERS for character in name)


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
    problem = file_problem(file)
    if problem:
        hint = " (run the filelists/augment stages first)" if problem == "does not exist" else ""
        raise HeadposeError(f"sample list {file} {problem}{hint}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HeadposeError(f"cannot read sample list {file}: {error}") from None
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    for number, stem in enumerate(stems, 1):
        if stem.lower().endswith((IMAGE_SUFFIX, ANNOTATION_SUFFIX)):
            raise HeadposeError(
                f"sample list {file} line {number}: {stem!r} names a file; a list names each "
                f"sample without its extension ({stem[: -len(IMAGE_SUFFIX)]!r} for its "
                f"{IMAGE_SUFFIX} and {ANNOTATION_SUFFIX})"
            )
    if not stems and not allow_empty:
        raise HeadposeError(f"sample list {file} is empty: expected one sample path per line")
    return stems
