"""The synthetic datasets: a 300W_LP-like training set and an AFLW2000-like test set.

Every image is a procedural head (``headpose.synth.head``) rendered into a cluttered scene
(``headpose.synth.scene``) at a pose drawn from a distribution whose 5th/95th percentiles match
the real dataset's (``synth.train_pose`` / ``synth.test_pose`` in params.yaml). Labels are written
in the real on-disk formats (``NAME.jpg`` + ``NAME.mat`` with ``Pose_Para``, ``pt2d``, ``roi``;
``pt3d_68`` too for the test set) and follow the dataset projection convention exactly: ``pt2d``
is the projection of the head's 3D landmarks with the stored ``Pose_Para``.

Pose distribution: each angle is a normal distribution truncated to HopeNet's labelled range
[-99, 99] degrees, with mean and standard deviation solved so that the truncated distribution's
5th and 95th percentiles equal the targets. For a wide target such as 300W_LP's yaw (+-81.8) the
solution has a large spread and is nearly flat, as the real yaw histogram is; for the narrow,
asymmetric pitch and roll it is close to an ordinary normal. The test set additionally has a
share ``synth.test_outlier_fraction`` of poses with angles beyond +-99 degrees, as AFLW2000 has,
so the filtering stage has something to drop (see :func:`sample_poses`).

Determinism: every random choice comes from ``numpy.random.SeedSequence(seed, spawn_key=...)``
keyed by the dataset and the sample's index, so the files are byte-identical for one seed
whatever the number of worker processes.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from scipy import optimize, stats

from headpose.datasets.mat import find_sample_stems, read_pair, write_sample
from headpose.errors import HeadposeError
from headpose.geometry import (
    ANGLE_NAMES,
    flip_pose_horizontally,
    project_points,
    rotation_matrix,
)
from headpose.io.files import atomic_directory
from headpose.io.parallel import map_with_progress, worker_count
from headpose.plots import plot_contact_sheet
from headpose.synth.head import MIRRORED_68, Head, Identity, build_head, sample_identity
from headpose.synth.scene import (
    Lighting,
    background,
    degrade,
    draw_head,
    draw_torso,
    sample_lighting,
)

LABEL_LIMIT_DEG = 99.0  # HopeNet's labelled range; regular poses stay inside it

# 300W_LP's source folders and their shares of its 61,225 (unflipped) images.
TRAIN_FOLDERS = {"AFW": 5207, "HELEN": 37676, "IBUG": 1786, "LFPW": 16556}

# spawn_key roots, one per independent random stream.
_TRAIN_POSES, _TEST_POSES, _TRAIN_FACE, _TRAIN_VARIANT, _TEST_IMAGE = range(5)

# AFLW2000 stores a landmark hidden at the pose as (-1, H + 2): (-1, 452) in 450 px images.
HIDDEN_X = -1.0
# An AFLW landmark counts as visible when its surface normal's camera-space z exceeds this
# (a little above 0, so points about to be hidden behind the nose or cheek count as hidden).
# Every image keeps at least MIN_VISIBLE points (the most camera-facing), as the real files do.
VISIBLE_NORMAL_Z = 0.2
MIN_VISIBLE = 3


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """The random generator of one stream (dataset, sample index, ...) of a seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# ----------------------------------------------------------------------------- pose distribution


@dataclass(frozen=True)
class AngleDistribution:
    """A normal distribution (degrees) truncated to [-LABEL_LIMIT_DEG, LABEL_LIMIT_DEG]."""

    mean_deg: float
    sd_deg: float

    def _frozen(self):
        low = (-LABEL_LIMIT_DEG - self.mean_deg) / self.sd_deg
        high = (LABEL_LIMIT_DEG - self.mean_deg) / self.sd_deg
        return stats.truncnorm(low, high, loc=self.mean_deg, scale=self.sd_deg)

    def quantile(self, probability):
        return self._frozen().ppf(probability)


def fit_angle_distribution(
    p5_deg: float, p95_deg: float, name: str, levels: tuple[float, float] = (0.05, 0.95)
) -> AngleDistribution:
    """Solve the truncated normal whose ``levels`` quantiles are ``p5_deg`` and ``p95_deg``.

    ``levels`` is (0.05, 0.95) unless outliers outside [-99, 99] take part of the tails. Raises a
    HeadposeError naming ``name`` (the params key) when no such distribution exists, e.g. when
    the targets are wider than a flat distribution over [-99, 99] allows.
    """
    z95 = stats.norm.ppf(0.95)

    def residual(x):
        candidate = AngleDistribution(x[0], math.exp(x[1]))
        return candidate.quantile(levels) - [p5_deg, p95_deg]

    start = [(p5_deg + p95_deg) / 2, math.log(max((p95_deg - p5_deg) / (2 * z95), 0.1))]
    solution = optimize.least_squares(residual, start, xtol=1e-12, ftol=1e-12)
    if np.max(np.abs(solution.fun)) > 0.05:
        raise HeadposeError(
            f"params.yaml: {name} is [{p5_deg}, {p95_deg}]; no distribution on "
            f"[-{LABEL_LIMIT_DEG:g}, {LABEL_LIMIT_DEG:g}] degrees of the chosen family has these "
            "5th/95th percentiles (targets too wide or too close to the limits)"
        )
    return AngleDistribution(float(solution.x[0]), float(math.exp(solution.x[1])))


def sample_poses(
    rng: np.random.Generator,
    count: int,
    targets: dict[str, list[float]],
    block: str,
    outlier_fraction: float = 0.0,
) -> np.ndarray:
    """Draw ``count`` poses as an (N, 3) array of (yaw, pitch, roll) degrees.

    ``targets`` maps yaw/pitch/roll to [p5, p95] (``block`` names it in errors). Each angle is
    drawn by stratified inverse-CDF sampling (one uniform per 1/N-wide stratum, shuffled), so even
    a few hundred poses hit the percentiles closely. A share ``outlier_fraction`` of the poses is
    then written on the other Euler branch (pitch + 180, 180 - yaw, roll + 180, wrapped to
    [-180, 180)): the same rotation, so the face still looks at the camera, but with labels
    beyond +-99 degrees, like most of AFLW2000's 31 outliers. The targets describe the whole
    set, outliers included, so the regular poses are fitted to the quantile levels left once
    the outliers take their share of both tails (half each).
    """
    outliers = rng.choice(count, size=round(outlier_fraction * count), replace=False)
    tail = len(outliers) / count / 2
    if tail >= 0.05:
        raise HeadposeError(
            f"params.yaml: synth.test_outlier_fraction gives {len(outliers)} outliers among "
            f"{count} images; expected under 10% so the 5th/95th percentiles are not all outliers"
        )
    levels = ((0.05 - tail) / (1 - 2 * tail), (0.95 - tail) / (1 - 2 * tail))
    poses = np.empty((count, 3))
    for column, name in enumerate(ANGLE_NAMES):
        distribution = fit_angle_distribution(*targets[name], f"{block}.{name}", levels)
        strata = (rng.permutation(count) + rng.uniform(size=count)) / count
        poses[:, column] = distribution.quantile(strata)
    yaw_deg, pitch_deg, roll_deg = poses[outliers].T
    other_branch = np.stack([180.0 - yaw_deg, pitch_deg + 180.0, roll_deg + 180.0], axis=1)
    poses[outliers] = (other_branch + 180.0) % 360.0 - 180.0
    return poses


def pose_percentiles(poses_deg: np.ndarray, targets: dict[str, list[float]]) -> dict:
    """Produced 5th/95th percentiles per angle next to the targets (degrees, 2 decimals)."""
    table = {}
    for column, name in enumerate(ANGLE_NAMES):
        p5, p95 = np.percentile(poses_deg[:, column], [5, 95])
        table[name] = {
            "p5": round(float(p5), 2),
            "p95": round(float(p95), 2),
            "target_p5": targets[name][0],
            "target_p95": targets[name][1],
        }
    return table


# ----------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class RenderedSample:
    """One rendered image and its labels, in the dataset conventions."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    pose_para: np.ndarray  # (7,) float32: pitch, yaw, roll (rad), tx, ty, tz, scale
    landmarks_68: np.ndarray  # (68, 3) model-space landmarks (mm)
    landmarks_aflw: np.ndarray  # (21, 3) model-space AFLW landmarks (mm)
    aflw_visible: np.ndarray  # (21,) bool
    jpeg_quality: int


@dataclass(frozen=True)
class _Face:
    """What a face's own stream (``face_key``) draws before its pose: shared by its variants."""

    identity: Identity
    head: Head
    lighting: Lighting
    scale: float
    shift_xy: np.ndarray
    background: np.ndarray
    rng: np.random.Generator  # the face's stream after these draws (the torso draws next)


@functools.lru_cache(maxsize=1)
def _face(seed: int, face_key: tuple[int, ...], image_size: int) -> _Face:
    """The face ``face_key``, built once for its consecutive pose variants (a worker renders
    them in one chunk); each variant copies its background and generator, so every image is
    byte-identical to one rendered on its own."""
    face_rng = rng_for(seed, *face_key)
    identity = sample_identity(face_rng)
    head = build_head(identity, face_rng)
    lighting = sample_lighting(face_rng)
    scale = face_rng.uniform(1.2, 1.7) * image_size / 450
    shift_xy = face_rng.normal(0.0, 0.04 * image_size, size=2)
    image = background(face_rng, image_size)
    shift_xy.flags.writeable = image.flags.writeable = False
    return _Face(identity, head, lighting, scale, shift_xy, image, face_rng)


def render_sample(
    seed: int, face_key: tuple[int, ...], image_key: tuple[int, ...], pose_deg, image_size: int
) -> RenderedSample:
    """Render one image of the face ``face_key`` at ``pose_deg`` = (yaw, pitch, roll) degrees.

    Identity, scale, position, lighting and background come from ``face_key`` (shared by the
    pose variants of one face); blur, noise and JPEG quality from ``image_key``.
    """
    face = _face(seed, tuple(face_key), image_size)
    identity, head, lighting, scale, shift_xy = (
        face.identity,
        face.head,
        face.lighting,
        face.scale,
        face.shift_xy,
    )
    face_rng = copy.deepcopy(face.rng)  # where the face's stream stood after the background
    image = face.background.copy()
    image_rng = rng_for(seed, *image_key)

    yaw_deg, pitch_deg, roll_deg = pose_deg
    angles_rad = [math.radians(a) for a in (pitch_deg, yaw_deg, roll_deg)]
    # Centre the face (the landmarks' box), not the skull, on the image, as the real crops are.
    rotated = head.landmarks_68 @ rotation_matrix(*angles_rad).T * scale
    box_center = (rotated.min(axis=0) + rotated.max(axis=0)) / 2
    center = (image_size + 1) / 2 + np.array([shift_xy[0], -shift_xy[1]])
    translation = [center[0] - box_center[0], center[1] - box_center[1], 0.0]
    pose_para = np.array([*angles_rad, *translation, scale], dtype=np.float32)

    neck = project_points(np.array([[0.0, -identity.half_height_mm, 0.0]]), pose_para, image_size)
    draw_torso(image, face_rng, (neck[0, 0], neck[0, 1]), 1.3 * identity.half_width_mm * scale)
    draw_head(image, head, pose_para, lighting)
    image = degrade(image, image_rng)

    normals_z = (head.aflw_normals @ rotation_matrix(*pose_para[:3].astype(np.float64)).T)[:, 2]
    visible = normals_z > VISIBLE_NORMAL_Z
    visible[np.argsort(-normals_z)[:MIN_VISIBLE]] = True
    return RenderedSample(
        image=image,
        pose_para=pose_para,
        landmarks_68=head.landmarks_68,
        landmarks_aflw=head.landmarks_aflw,
        aflw_visible=visible,
        jpeg_quality=int(image_rng.integers(70, 96)),
    )


def _roi(points_xy: np.ndarray) -> np.ndarray:
    """A square box (1x4 int16: x_min, y_min, x_max, y_max) around the points, 1.5x their size."""
    low, high = points_xy.min(axis=0), points_xy.max(axis=0)
    center, half = (low + high) / 2, 0.75 * float(np.max(high - low))
    return np.round([[center[0] - half, center[1] - half, center[0] + half, center[1] + half]])


def w300lp_labels(sample: RenderedSample) -> dict[str, np.ndarray]:
    """The .mat arrays of a 300W_LP-style sample: Pose_Para, pt2d (2x68), roi."""
    size = sample.image.shape[0]
    projected = project_points(sample.landmarks_68, sample.pose_para, size)
    return {
        "Pose_Para": sample.pose_para.reshape(1, 7),
        "pt2d": projected[:, :2].T,
        "roi": _roi(projected[:, :2]).astype(np.int16),
    }


def mirrored_labels(labels: dict[str, np.ndarray], image_size: int) -> dict[str, np.ndarray]:
    """Labels of the mirrored image: x mirrored, points re-ordered, yaw and roll negated."""
    pt2d = labels["pt2d"][:, MIRRORED_68].copy()
    pt2d[0] = image_size + 1 - pt2d[0]
    roi = labels["roi"].copy()
    roi[0, [0, 2]] = image_size + 1 - labels["roi"][0, [2, 0]]
    pose = flip_pose_horizontally(labels["Pose_Para"], image_size).astype(np.float32)
    return {"Pose_Para": pose.reshape(1, 7), "pt2d": pt2d, "roi": roi}


def aflw2000_labels(sample: RenderedSample) -> dict[str, np.ndarray]:
    """The .mat arrays of an AFLW2000-style sample: Pose_Para, pt2d (2x21), pt3d_68, roi."""
    size = sample.image.shape[0]
    projected_68 = project_points(sample.landmarks_68, sample.pose_para, size)
    pt2d = project_points(sample.landmarks_aflw, sample.pose_para, size)[:, :2]
    pt2d[~sample.aflw_visible] = [HIDDEN_X, size + 2.0]
    return {
        "Pose_Para": sample.pose_para.reshape(1, 7),
        "pt2d": pt2d.T,
        "pt3d_68": projected_68.T.astype(np.float32),
        "roi": _roi(projected_68[:, :2]).astype(np.int16),
    }


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Job:
    """One image to render and write (picklable for the worker pool)."""

    seed: int
    face_key: tuple[int, ...]
    image_key: tuple[int, ...]
    pose_deg: tuple[float, float, float]
    image_size: int
    stem: str  # output path without extension, relative to output_root
    flip_stem: str | None  # where the mirrored twin goes (training set only), or None
    is_test: bool
    output_root: str = ""  # the dataset folder being written


def _folder_of_faces(face_count: int) -> list[str]:
    """The 300W_LP folder of each face index, in the real set's proportions."""
    total = sum(TRAIN_FOLDERS.values())
    bounds = np.round(np.cumsum(list(TRAIN_FOLDERS.values())) / total * face_count).astype(int)
    return [
        list(TRAIN_FOLDERS)[int(np.searchsorted(bounds, i, side="right"))]
        for i in range(face_count)
    ]


def w300lp_jobs(settings: dict, seed: int) -> list[Job]:
    """Jobs of the 300W_LP-like set: ``variants_per_face`` poses of each face."""
    faces, variants = settings["train_faces"], settings["variants_per_face"]
    poses = sample_poses(
        rng_for(seed, _TRAIN_POSES), faces * variants, settings["train_pose"], "synth.train_pose"
    )
    jobs = []
    for face, folder in enumerate(_folder_of_faces(faces)):
        for variant in range(variants):
            name = f"{folder}_{face}_1_{variant}"
            jobs.append(
                Job(
                    seed=seed,
                    face_key=(_TRAIN_FACE, face),
                    image_key=(_TRAIN_VARIANT, face, variant),
                    pose_deg=tuple(poses[face * variants + variant]),
                    image_size=settings["image_size"],
                    stem=f"{folder}/{name}",
                    flip_stem=f"{folder}_Flip/{name}" if settings["mirror"] else None,
                    is_test=False,
                )
            )
    return jobs


def aflw2000_jobs(settings: dict, seed: int) -> list[Job]:
    """Jobs of the AFLW2000-like set: one face per image, ``image0XXXX`` names, flat folder."""
    count = settings["test_images"]
    poses = sample_poses(
        rng_for(seed, _TEST_POSES),
        count,
        settings["test_pose"],
        "synth.test_pose",
        outlier_fraction=settings["test_outlier_fraction"],
    )
    return [
        Job(
            seed=seed,
            face_key=(_TEST_IMAGE, index),
            image_key=(_TEST_IMAGE, index, 0),
            pose_deg=tuple(poses[index]),
            image_size=settings["image_size"],
            stem=f"image{index:05d}",
            flip_stem=None,
            is_test=True,
        )
        for index in range(count)
    ]


def run_job(job: Job) -> tuple[float, float, float]:
    """Render and write one job's sample(s); return its (yaw, pitch, roll) degrees."""
    cv2.setNumThreads(1)  # the pool parallelises over samples
    sample = render_sample(job.seed, job.face_key, job.image_key, job.pose_deg, job.image_size)
    root = Path(job.output_root)
    if job.is_test:
        write_sample(root / job.stem, sample.image, aflw2000_labels(sample), sample.jpeg_quality)
        return job.pose_deg
    labels = w300lp_labels(sample)
    write_sample(root / job.stem, sample.image, labels, sample.jpeg_quality)
    if job.flip_stem is not None:
        mirrored = np.ascontiguousarray(sample.image[:, ::-1])
        write_sample(
            root / job.flip_stem,
            mirrored,
            mirrored_labels(labels, job.image_size),
            sample.jpeg_quality,
        )
    return job.pose_deg


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker pool), in seconds."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class Synthesis:
    """What :func:`generate` reports: the metrics (the same on every run of one seed and
    settings) and the timing of this run (which varies, so it is kept apart)."""

    metrics: dict
    timing: dict


def generate(
    settings: dict,
    seed: int,
    train_root: str | os.PathLike,
    test_root: str | os.PathLike,
    workers: int,
) -> Synthesis:
    """Write both datasets atomically; return the metrics (counts, pose percentiles) and the
    timing (wall and CPU time, rate, worker processes)."""
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    train, test = w300lp_jobs(settings, seed), aflw2000_jobs(settings, seed)  # checks the targets
    with atomic_directory(train_root) as train_temp, atomic_directory(test_root) as test_temp:
        train = [replace(job, output_root=str(train_temp)) for job in train]
        test = [replace(job, output_root=str(test_temp)) for job in test]
        folders = {Path(job.stem).parent for job in train}
        folders |= {Path(job.flip_stem).parent for job in train if job.flip_stem}
        for folder in folders:
            (train_temp / folder).mkdir(parents=True, exist_ok=True)
        angles = np.array(map_with_progress(run_job, train + test, workers, "synth"))
    wall_s = time.perf_counter() - started
    cpu_s = _cpu_seconds() - cpu_started
    train_images = len(train) * (2 if settings["mirror"] else 1)
    images = train_images + len(test)
    metrics = {
        "train_images": train_images,
        "train_faces": settings["train_faces"],
        "variants_per_face": settings["variants_per_face"],
        "mirror": settings["mirror"],
        "test_images": len(test),
        "test_outliers": int(
            np.sum(np.any(np.abs(angles[len(train) :]) > LABEL_LIMIT_DEG, axis=1))
        ),
        "image_size": settings["image_size"],
        "pose_percentiles_deg": {
            "300W_LP": pose_percentiles(angles[: len(train)], settings["train_pose"]),
            "AFLW2000": pose_percentiles(angles[len(train) :], settings["test_pose"]),
        },
    }
    timing = {
        "workers": worker_count(workers),
        "wall_s": round(wall_s, 2),
        "images_per_s": round(images / wall_s, 2),
        "cpu_ms_per_image": round(1000 * cpu_s / images, 2),
    }
    return Synthesis(metrics, timing)


def write_contact_sheet(
    train_root: str | os.PathLike,
    test_root: str | os.PathLike,
    path: str | os.PathLike,
    per_dataset: int = 12,
    with_landmarks: int = 4,
) -> Path:
    """A grid of evenly spaced samples of both sets; the first few of each show their landmarks."""
    images, titles, landmarks = [], [], []
    for root, recursive in ((Path(train_root), True), (Path(test_root), False)):
        stems, _ = find_sample_stems(root, recursive=recursive)
        picks = [
            stems[i]
            for i in np.linspace(0, len(stems) - 1, min(per_dataset, len(stems)))
            .round()
            .astype(int)
        ]
        for position, stem in enumerate(picks):
            image, labels = read_pair(root / stem)
            yaw_deg, pitch_deg, roll_deg = labels.angles_deg
            images.append(image)
            titles.append(f"{Path(stem).name}\ny{yaw_deg:.0f} p{pitch_deg:.0f} r{roll_deg:.0f}")
            landmarks.append(labels.visible_points_xy if position < with_landmarks else None)
    return plot_contact_sheet(images, titles, landmarks, path)
