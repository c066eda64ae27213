"""The ``.jpg`` + ``.mat`` formats, 300W_LP (training) and AFLW2000-3D (testing): their files,
read, validated and written here and nowhere else.

A sample is a pair ``NAME.jpg`` + ``NAME.mat``; its entry is the pair's path without extension.
The face is framed from its landmarks by the crop protocol.

**The .mat keys** (:func:`read_mat_labels`): ``Pose_Para`` (1x7 float32: pitch, yaw, roll in
radians, tx, ty, tz, scale; 3 to 7 values accepted), ``pt2d`` (2xN image landmarks, 1-based;
AFLW2000 marks invisible ones with negative coordinates) and ``pt3d_68`` (3x68, AFLW2000 only;
its x, y are framed when ``pt2d`` is absent); ``roi`` and the 3DMM parameters are not used. They
become :class:`~headpose.datasets.labels.Labels` (``pose``, ``landmarks_2d``, ``landmarks_3d``),
and :func:`mat_arrays` turns labels back into those keys (300W_AUG and the synthetic sets write
their samples with :func:`write_sample`).

**The one validation of a pair** is :func:`read_pair_header` (:meth:`MatPairFormat.read` adds
the decoded image), before anything is decoded or resized: the .mat keys exist, hold real
numbers (no text, cell arrays or complex values), have the expected shapes, are finite, and the
angles are within :data:`~headpose.datasets.labels.MAX_ABS_ANGLE_DEG`; the image's header
(:func:`headpose.io.images.image_header_size`) is a JPEG of bounded size; the landmarks pass
:func:`~headpose.datasets.labels.check_landmarks` against it.

* ``300w_lp``: pairs searched recursively (the ``landmarks/`` folder holds none), grouped by
  source photo (:func:`headpose.datasets.naming.group_key`: pose variants, ``*_Flip`` twins
  and 300W_AUG rotations of one photo share a group).
* ``aflw2000``: pairs of one flat folder (``Code/`` is not searched). Its guard: a test list is
  recognised as the real AFLW2000-3D when all its samples lie in one folder whose pairs are
  exactly the 2000 of the real set (the SHA-256 of their sorted names,
  :data:`AFLW2000_NAMES_SHA256`); then it must hold exactly the 1969 protocol images, each once
  (:data:`AFLW2000_TEST_NAMES_SHA256`), so no number is reported under another protocol by
  mistake. A partial copy of the set is not recognised.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import scipy.io

from headpose.datasets import registry
from headpose.datasets.labels import MAX_ABS_ANGLE_DEG, Labels, check_landmarks
from headpose.datasets.naming import group_key as photo_group_key
from headpose.datasets.registry import DatasetFormat, Scan, register_format
from headpose.errors import HeadposeError
from headpose.geometry import pose_angles_deg
from headpose.io.files import atomic_path
from headpose.io.images import image_header_size, read_image, refuse_special_file, write_jpeg

IMAGE_SUFFIX = ".jpg"
ANNOTATION_SUFFIX = ".mat"
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by headpose"
AFLW2000_TEST_COUNT = 1969  # the standard test set: the images with every |angle| <= 99 deg
AFLW2000_NAMES_SHA256 = "acb1af9f109532c8cbb1c8a5a8e402c7acaf11402375c186dd343bf922704d70"
# The 1969 names whose angles all lie within +-99 degrees, sorted, one per line.
AFLW2000_TEST_NAMES_SHA256 = "039b5d774142a6e25e03b473b8b492e45d4ab374dd08599945c0d33409faf488"
IGNORED_FOLDERS = ("landmarks",)  # 300W_LP's landmark folder holds no samples


# --- The .mat file ------------------------------------------------------------------------------


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


def read_mat(path: str | os.PathLike) -> dict:
    """Load a .mat file, raising a HeadposeError that names the file if it is missing or corrupt."""
    refuse_special_file(path, "annotation (.mat)")
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


def read_mat_labels(
    path: str | os.PathLike, image_size_wh: tuple[int, int] | None = None
) -> Labels:
    """Read and validate the labels of one sample from its .mat file.

    Requires a finite ``Pose_Para`` of 3 to 7 real numbers whose angles are within
    :data:`~headpose.datasets.labels.MAX_ABS_ANGLE_DEG`, and a ``2xN`` ``pt2d`` (else the
    ``3xN`` ``pt3d_68``, which is checked too when present) whose points pass
    :func:`~headpose.datasets.labels.check_landmarks` (against the image's (width, height)
    ``image_size_wh`` when given).
    """
    mat = read_mat(path)
    pose = _pose(mat, path)
    landmarks_3d = _points(mat, "pt3d_68", 3, path) if "pt3d_68" in mat else None
    if landmarks_3d is not None and not np.all(np.isfinite(landmarks_3d)):
        raise HeadposeError(f"{path}: pt3d_68 holds values that are not finite")
    landmarks_2d = _points(mat, "pt2d", 2, path) if "pt2d" in mat else None
    if landmarks_2d is None and landmarks_3d is None:
        raise HeadposeError(f"{path}: no landmarks (pt2d or pt3d_68) in the .mat file")
    labels = Labels(
        pose_angles_deg(pose),
        landmarks_2d=None if landmarks_2d is None else landmarks_2d.T,
        landmarks_3d=None if landmarks_3d is None else landmarks_3d.T,
        pose=pose,
    )
    what = "pt2d" if landmarks_2d is not None else "pt3d_68"
    check_landmarks(labels.points_xy, str(path), image_size_wh, what)
    return labels


def mat_arrays(labels: Labels) -> dict[str, np.ndarray]:
    """The .mat keys of landmark ``labels`` (what :func:`read_mat_labels` reads back):
    ``Pose_Para`` (the stored pose, else pitch, yaw, roll in radians) as float32 1xN, ``pt2d``
    and ``pt3d_68`` as stored (float64, points in columns) where the labels hold them."""
    if labels.pose is not None:
        pose = np.asarray(labels.pose, dtype=np.float64).ravel()
    else:
        yaw, pitch, roll = labels.angles_deg
        pose = np.radians([pitch, yaw, roll])
    arrays = {"Pose_Para": pose[None, :].astype(np.float32)}
    if labels.landmarks_2d is not None:
        arrays["pt2d"] = np.asarray(labels.landmarks_2d, dtype=np.float64).T
    if labels.landmarks_3d is not None:
        arrays["pt3d_68"] = np.asarray(labels.landmarks_3d, dtype=np.float64).T
    return arrays


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


def read_pair_header(stem: str | os.PathLike) -> tuple[Labels, tuple[int, int]]:
    """Validate the sample ``STEM.jpg`` + ``STEM.mat`` without decoding its pixels: (labels,
    (width, height) of the image header). Raises a HeadposeError naming the file at fault."""
    image_path = f"{stem}{IMAGE_SUFFIX}"
    size = image_header_size(image_path)
    if size is None:
        raise HeadposeError(f"{image_path}: not a decodable JPEG (no JPEG header)")
    return read_mat_labels(f"{stem}{ANNOTATION_SUFFIX}", size), size


def read_pair(stem: str | os.PathLike) -> tuple[np.ndarray, Labels]:
    """(RGB image, labels) of the validated sample ``STEM.jpg`` + ``STEM.mat``
    (:func:`read_pair_header`, then the decode); raises a HeadposeError naming the file."""
    labels, (width, height) = read_pair_header(stem)
    image = read_image(f"{stem}{IMAGE_SUFFIX}")
    if image.shape[:2] != (height, width):
        raise HeadposeError(
            f"{stem}{IMAGE_SUFFIX}: decodes to {image.shape[1]}x{image.shape[0]} pixels, but its "
            f"header claims {width}x{height}"
        )
    return image, labels


# --- The formats --------------------------------------------------------------------------------


def _sha256_of_file(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        raise HeadposeError(f"{path}: sample file not found") from None
    except OSError as error:
        raise HeadposeError(f"{path}: cannot read sample file ({error.strerror})") from None


def _names_digest(names) -> str:
    return hashlib.sha256("".join(f"{name}\n" for name in sorted(names)).encode()).hexdigest()


def _has_pairs(folder: Path, pattern: str) -> bool:
    return any(image.with_suffix(ANNOTATION_SUFFIX).exists() for image in folder.glob(pattern))


class MatPairFormat(DatasetFormat):
    """Shared by 300W_LP and AFLW2000: one ``.jpg`` + ``.mat`` pair per sample."""

    recursive: bool
    shared_layout = True

    @classmethod
    def owns(cls, entry: str) -> bool:
        """Every entry no other format claims (the lists of every earlier version)."""
        others = [f for f in registry.formats().values() if not issubclass(f, MatPairFormat)]
        return not any(other.owns(entry) for other in others)

    @classmethod
    def scan(cls, root: Path) -> Scan:
        stems, image_orphans = find_sample_stems(root, cls.recursive)
        stems = [stem for stem in stems if stem.split("/")[0] not in IGNORED_FOLDERS]
        pattern = f"**/*{ANNOTATION_SUFFIX}" if cls.recursive else f"*{ANNOTATION_SUFFIX}"
        paired = set(stems) | set(image_orphans)
        annotation_orphans = [
            stem
            for mat in sorted(root.glob(pattern))
            if (stem := _stem(mat, root)) not in paired
            and stem.split("/")[0] not in IGNORED_FOLDERS
        ]
        unpaired = [
            (sample_path(root, stem), f"no {ANNOTATION_SUFFIX} beside the image")
            for stem in image_orphans
        ] + [
            (sample_path(root, stem), f"no {IMAGE_SUFFIX} beside the annotation")
            for stem in annotation_orphans
        ]
        return Scan([sample_path(root, stem) for stem in stems], unpaired)

    @classmethod
    def header(cls, entry: str) -> Labels:
        return read_pair_header(entry)[0]

    @classmethod
    def read(cls, entry: str) -> tuple[np.ndarray, Labels]:
        return read_pair(entry)

    @classmethod
    def image_file(cls, entry: str) -> str:
        return entry + IMAGE_SUFFIX

    @classmethod
    def digest(cls, entry: str) -> str:
        return _sha256_of_file(entry + ANNOTATION_SUFFIX) + _sha256_of_file(entry + IMAGE_SUFFIX)


def _stem(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def sample_path(root: str | os.PathLike, stem: str) -> str:
    """A ``.jpg`` + ``.mat`` sample's entry: the dataset root as given joined with its stem
    (POSIX), the pair's path without extension."""
    return (Path(root) / stem).as_posix()


@register_format
class Format300WLP(MatPairFormat):
    name = "300w_lp"
    description = "NAME.jpg + NAME.mat pairs in subfolders (300W_LP), searched recursively"
    recursive = True

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return (
            root.is_dir()
            and not _has_pairs(root, f"*{IMAGE_SUFFIX}")
            and any(
                _has_pairs(folder, f"*{IMAGE_SUFFIX}")
                for folder in root.iterdir()
                if folder.is_dir()
            )
        )

    @classmethod
    def group_key(cls, entry: str) -> str:
        return photo_group_key(entry)


@register_format
class FormatAFLW2000(MatPairFormat):
    name = "aflw2000"
    description = "NAME.jpg + NAME.mat pairs in one flat folder (AFLW2000-3D)"
    recursive = False

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return root.is_dir() and _has_pairs(root, f"*{IMAGE_SUFFIX}")

    @classmethod
    def check_test_set(cls, entries: list[str], source: str) -> bool:
        """The 1969-image guard (see the module docstring)."""
        if not is_real_aflw2000(entries):
            return False
        names = [Path(entry).name for entry in entries]
        distinct = set(names)
        if len(names) == len(distinct) and _names_digest(distinct) == AFLW2000_TEST_NAMES_SHA256:
            return True
        repeated = len(names) - len(distinct)
        what = f"{len(entries)} samples ({len(distinct)} distinct"
        what += f", {repeated} listed more than once)" if repeated else ")"
        raise HeadposeError(
            f"{source} holds {what} of the real AFLW2000-3D, but the standard protocol (drop any "
            f"|angle| > 99 deg) is {AFLW2000_TEST_COUNT} distinct images: refusing to report "
            "a number that would not compare with published results; check max_angle, the "
            "skipped samples and the list"
        )


def is_real_aflw2000(entries: list[str]) -> bool:
    """Whether the samples lie in one folder holding exactly the real AFLW2000-3D pairs."""
    folders = {Path(entry).parent for entry in entries}
    if len(folders) != 1:
        return False
    folder = folders.pop()
    names = [path.stem for path in folder.glob("*.jpg") if path.with_suffix(".mat").is_file()]
    return _names_digest(names) == AFLW2000_NAMES_SHA256
