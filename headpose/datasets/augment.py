"""300W_AUG: in-plane rotated copies of a share of the training list, with exact labels.

The improvement report's recipe: pick a random ``aug_fraction`` of the train list (never val)
and rotate each chosen image in the image plane by every angle of ``aug_angles``. Samples of
any landmark format are read through their :class:`~headpose.datasets.registry.Sample` (a
stored-box sample cannot be rotated with exact labels and is trained on as it is); each copy is
written in 300W_AUG's own format, a new ``NAME_rot<angle>.jpg`` + ``.mat``
(:func:`headpose.datasets.mat.write_sample`), whose labels describe the rotated image:

* the pose: the in-plane rotation composed with the head rotation
  (:func:`headpose.geometry.rotate_pose_in_plane`, Euler angles by atan2 on the branch nearest
  the original); a stored 7-value 3DDFA pose also has its translation rotated about the same
  centre, a sample with angles only gets the 3 rotated angles;
* the 2D landmarks (visible points; AFLW2000-style placeholders for invisible ones stay as they
  are) and the x/y of the 3D ones (depth unchanged) are rotated with the same affine matrix as
  the pixels. Nothing else is copied: ``roi``'s box format is undocumented (and a rotated box is
  no box), and the 3DMM parameters are not used by this project.

Canvas policy: the image keeps its size; it is rotated about the centre of its visible
landmarks (so the face stays where it was) and the uncovered corners are filled by reflecting
the image (``cv2.BORDER_REFLECT_101``). A rotation that would move a visible landmark that was
inside the image out of it is skipped and reported, never written with clipped labels; so is
a copy whose new angles exceed ``max_angle`` (the filter the file lists apply).

Landmarks are 1-based image coordinates; the pixel grid is 0-based, so the pixels are warped
about ``centre - 1`` with the same rotation (see :func:`in_plane_rotation_affine`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from headpose.datasets.filelists import angles_table_text, list_text, skipped_table_text
from headpose.datasets.labels import Labels, angles_within, visible_landmarks
from headpose.datasets.mat import mat_arrays, sample_path, write_sample
from headpose.datasets.naming import rotated_name
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError
from headpose.geometry import (
    apply_affine,
    in_plane_rotation_affine,
    pose_angles_deg,
    rotate_pose_in_plane,
)
from headpose.io.files import atomic_directory, write_text
from headpose.io.parallel import map_with_progress

DATASET_NAME = "300W_AUG"


@dataclass(frozen=True)
class RotatedSample:
    """One rotated copy: the new image and its labels."""

    image_rgb: np.ndarray
    labels: Labels

    @property
    def angles_deg(self) -> tuple[float, float, float]:
        return self.labels.angles_deg


@dataclass(frozen=True)
class AugmentTask:
    """Rotate one training sample by every angle, writing into ``temp_folder``."""

    source: Sample  # the original sample
    relative_stem: str  # where its copies go inside the output folder
    angles_deg: tuple[float, ...]
    max_angle_deg: float  # copies with any |angle| above this are skipped, as in filelists
    temp_folder: str  # the folder being written
    final_folder: str  # its name once complete (list entries use it)


@dataclass
class Augmentation:
    """What the stage produced: the combined list, the new samples' angles and the skips."""

    combined: list[str]
    angles: list[tuple[str, str, tuple[float, float, float]]]
    skipped: list[tuple[str, str, str]]
    metrics: dict


def _inside(points_xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mask of 1-based points lying on the image."""
    x, y = points_xy[:, 0], points_xy[:, 1]
    return (x >= 1) & (x <= width) & (y >= 1) & (y <= height)


def _stored_pose(labels: Labels) -> np.ndarray:
    """The pose vector to rotate: the stored 3DDFA pose, else the angles in its order (pitch,
    yaw, roll in radians)."""
    if labels.pose is not None:
        pose = np.asarray(labels.pose, dtype=np.float64).ravel()
        if pose.size not in (3, 7):
            raise HeadposeError(
                f"the pose has {pose.size} values; rotating needs all 7 or the 3 angles alone"
            )
        return pose
    yaw, pitch, roll = labels.angles_deg
    return np.radians([pitch, yaw, roll])


def rotate_sample(image_rgb: np.ndarray, labels: Labels, angle_deg: float) -> RotatedSample:
    """Rotate one landmark sample in-plane by ``angle_deg`` (counter-clockwise on screen).

    The rotation centre is the centre of the bounding box of its visible landmarks. Raises a
    HeadposeError when a visible landmark inside the image would leave it, or when the stored
    pose is neither 7 values nor the 3 angles.
    """
    pose = _stored_pose(labels)
    landmarks_xy = labels.visible_points_xy
    height, width = image_rgb.shape[:2]
    center_xy = tuple((landmarks_xy.min(axis=0) + landmarks_xy.max(axis=0)) / 2.0)
    affine = in_plane_rotation_affine(angle_deg, center_xy)
    rotated_landmarks = apply_affine(affine, landmarks_xy)
    leaving = _inside(landmarks_xy, width, height) & ~_inside(rotated_landmarks, width, height)
    if leaving.any():
        raise HeadposeError(
            f"rotating by {angle_deg:g} deg moves {int(leaving.sum())} landmarks out of the "
            f"{width}x{height} image"
        )
    pixel_affine = in_plane_rotation_affine(angle_deg, (center_xy[0] - 1, center_xy[1] - 1))
    rotated_image = cv2.warpAffine(
        image_rgb,
        pixel_affine,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    rotated_pose = rotate_pose_in_plane(pose, angle_deg, center_xy, height)
    # the pose as its .mat stores it (float32), and the angles read back from those values
    rotated_pose = rotated_pose.astype(np.float32).astype(np.float64)
    landmarks_2d = landmarks_3d = None
    if labels.landmarks_2d is not None:
        landmarks_2d = np.asarray(labels.landmarks_2d, dtype=np.float64).copy()
        visible = visible_landmarks(landmarks_2d)
        landmarks_2d[visible] = apply_affine(affine, landmarks_2d[visible])
    if labels.landmarks_3d is not None:
        landmarks_3d = np.asarray(labels.landmarks_3d, dtype=np.float64).copy()
        landmarks_3d[:, :2] = apply_affine(affine, landmarks_3d[:, :2])
    rotated = Labels(
        pose_angles_deg(rotated_pose),
        landmarks_2d=landmarks_2d,
        landmarks_3d=landmarks_3d,
        pose=rotated_pose,
    )
    return RotatedSample(rotated_image, rotated)


def _require_in_range(angles_deg: tuple[float, float, float], angle_deg, max_angle_deg) -> None:
    if not angles_within(angles_deg, max_angle_deg):
        yaw, pitch, roll = angles_deg
        raise HeadposeError(
            f"rotating by {angle_deg:g} deg gives an angle beyond +-{max_angle_deg:g} deg "
            f"(yaw {yaw:.1f}, pitch {pitch:.1f}, roll {roll:.1f})"
        )


def augment_one(task: AugmentTask) -> list[tuple[str, tuple[float, float, float] | None, str]]:
    """Write every rotated copy of one sample; return (entry, angles or None, skip reason)."""
    relative = PurePosixPath(task.relative_stem)
    stems = [str(relative.with_name(rotated_name(relative.name, a))) for a in task.angles_deg]
    entries = [sample_path(task.final_folder, stem) for stem in stems]
    try:
        image, labels = task.source.read()
    except HeadposeError as error:
        return [(entry, None, str(error)) for entry in entries]
    results = []
    for angle_deg, stem, entry in zip(task.angles_deg, stems, entries, strict=True):
        try:
            rotated = rotate_sample(image, labels, angle_deg)
            _require_in_range(rotated.angles_deg, angle_deg, task.max_angle_deg)
        except HeadposeError as error:
            results.append((entry, None, f"{task.source}: {error}"))
            continue
        write_sample(Path(task.temp_folder) / stem, rotated.image_rgb, mat_arrays(rotated.labels))
        results.append((entry, rotated.angles_deg, ""))
    return results


def choose_samples(train: list[Sample], fraction: float, seed: int) -> list[Sample]:
    """A seeded random ``fraction`` of the train list, in list order."""
    count = round(fraction * len(train))
    chosen = np.random.default_rng(seed).choice(len(train), size=count, replace=False)
    return [train[index] for index in sorted(chosen)]


def _relative_stem(sample: Sample, train_root: str | os.PathLike) -> str:
    """The sample's path inside its dataset folder (its name alone if it lies elsewhere)."""
    path = PurePosixPath(sample.entry)
    try:
        return str(path.relative_to(Path(train_root).as_posix()))
    except ValueError:
        return path.name


def build_augmentation(
    train: list[Sample],
    train_root: str | os.PathLike,
    output_folder: str | os.PathLike,
    enabled: bool,
    fraction: float,
    angles_deg: list[float],
    max_angle_deg: float,
    seed: int,
    workers: int = 1,
) -> Augmentation:
    """Write ``output_folder`` (atomically): rotated copies, ``train.txt``, ``angles.tsv``,
    ``skipped.tsv``. With ``enabled`` false or ``fraction`` 0 only the list of originals."""
    if not train:
        raise HeadposeError("the train list is empty: nothing to augment")
    # Only landmark samples can be rotated with exact labels (a stored crop box, BIWI's, would
    # not stay a box); the others are trained on as they are.
    rotatable = [sample for sample in train if not sample.stores_crop_box]
    chosen = choose_samples(rotatable, fraction, seed) if enabled else []
    final_folder = Path(output_folder).as_posix()
    with atomic_directory(output_folder) as temp:
        tasks = [
            AugmentTask(
                source,
                _relative_stem(source, train_root),
                tuple(angles_deg),
                max_angle_deg,
                str(temp),
                final_folder,
            )
            for source in chosen
        ]
        results = [
            row
            for rows in map_with_progress(augment_one, tasks, workers, "rotating samples")
            for row in rows
        ]
        written = [(entry, DATASET_NAME, angles) for entry, angles, _ in results if angles]
        skipped = [(entry, DATASET_NAME, reason) for entry, angles, reason in results if reason]
        combined = [sample.entry for sample in train] + [entry for entry, _, _ in written]
        write_text(temp / "train.txt", list_text(combined))
        write_text(temp / "angles.tsv", angles_table_text(written))
        write_text(temp / "skipped.tsv", skipped_table_text(skipped))
    metrics = {
        "enabled": bool(enabled and chosen),
        "originals": len(train),
        "chosen": len(chosen),
        "rotations_per_sample": len(angles_deg) if chosen else 0,
        "rotated_written": len(written),
        "rotated_skipped": len(skipped),
        "combined": len(combined),
    }
    if len(rotatable) < len(train):
        metrics["not_rotatable"] = len(train) - len(rotatable)
    return Augmentation(combined, written, skipped, metrics)
