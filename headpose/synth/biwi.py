"""A BIWI-format synthetic test set: procedural heads in 640 x 480 frames, written in BIWI's raw
``hpdb`` layout (the writer checklist of ``docs/conventions.md``, "BIWI").

Each sequence folder ``hpdb/NN`` gets ``frame_XXXXX_rgb.png`` (640 x 480, 8-bit RGB) with its
``frame_XXXXX_pose.txt`` and the sequence's ``rgb.cal`` and ``depth.cal`` (sequence 01's
calibration of the real set). Odd sequences start at frame 00003 and even ones at 00000, and
every seventh number is skipped, so frame numbers have gaps as the real ones do. Poses are drawn
to BIWI's 5th/95th percentiles (:data:`BIWI_POSE`); the pose file holds M = D R D of the pose
(:func:`headpose.datasets.biwi.biwi_matrix`), and the head centre T (mm, depth camera frame).

A head is rendered by :func:`headpose.synth.render.render_sample` (the 300W_LP generator's
heads), scaled so its landmark box is :data:`FACE_WIDTH_MM` wide at T's depth, and pasted into a
background frame with its landmark box centred where T projects through the RGB calibration, so
the BIWI reader's projected box (and a detector) finds it there. Depth images, masks and head
templates are not written (no reader uses them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from headpose.datasets.biwi import (
    Calibration,
    biwi_matrix,
    write_calibration,
    write_pose_file,
)
from headpose.geometry import project_points
from headpose.io.files import atomic_directory
from headpose.io.parallel import map_with_progress
from headpose.synth.render import render_sample, rng_for, sample_poses
from headpose.synth.scene import background, degrade

# 5th/95th percentiles of all 15,678 BIWI frames (uncalibrated, benchmark formula).
BIWI_POSE = {"yaw": [-43.9, 57.6], "pitch": [-39.1, 49.5], "roll": [-23.9, 23.4]}
FRAME_WH = (640, 480)
RENDER_SIDE_PX = 256  # the square a head is rendered in before it is scaled into the frame
FACE_WIDTH_MM = 150.0  # width of the landmark box at the head centre's depth
RGB_CALIBRATION = Calibration(  # sequence 01 of the real set
    np.array([[517.679, 0, 320], [0, 517.679, 240.5], [0, 0, 1]]),
    np.zeros(4),
    np.array(
        [
            [0.999947, 0.00432361, 0.00929419],
            [-0.00446314, 0.999877, 0.0150443],
            [-0.009228, -0.015085, 0.999844],
        ]
    ),
    np.array([-24.0198, 5.8896, -13.2308]),
    FRAME_WH,
)
DEPTH_CALIBRATION = Calibration(
    np.array([[575.816, 0, 320], [0, 575.816, 240], [0, 0, 1]]),
    np.zeros(4),
    np.eye(3),
    np.zeros(3),
    FRAME_WH,
)
_POSES, _FRAME = 100, 101  # spawn_key roots of this set's random streams


@dataclass(frozen=True)
class BiwiJob:
    """One frame to render (picklable for the worker pool)."""

    seed: int
    index: int
    sequence: str
    frame: int
    pose_deg: tuple[float, float, float]
    output_root: str = ""


def biwi_jobs(sequences: int, frames_per_sequence: int, seed: int) -> list[BiwiJob]:
    """The frames of a set of ``sequences`` x ``frames_per_sequence`` frames."""
    count = sequences * frames_per_sequence
    poses = sample_poses(rng_for(seed, _POSES), count, BIWI_POSE, "biwi_pose")
    jobs = []
    for index in range(count):
        number, position = divmod(index, frames_per_sequence)
        first = 3 if number % 2 == 0 else 0  # sequence 01 starts at 00003, 02 at 00000, ...
        frame = first + position + position // 6  # every seventh number skipped
        jobs.append(
            BiwiJob(seed, index, f"{number + 1:02d}", frame, tuple(float(a) for a in poses[index]))
        )
    return jobs


def head_centre_mm(rng: np.random.Generator) -> np.ndarray:
    """A head centre in the depth camera frame, about a metre from the sensor."""
    return np.array([rng.uniform(-80, 80), rng.uniform(-50, 50), rng.uniform(800, 1050)])


def render_frame(job: BiwiJob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(RGB frame, pose matrix M, head centre T) of one job."""
    rng = rng_for(job.seed, _FRAME, job.index)
    sample = render_sample(
        job.seed, (_FRAME, job.index, 0), (_FRAME, job.index, 1), job.pose_deg, RENDER_SIDE_PX
    )
    centre = head_centre_mm(rng)
    points = project_points(sample.landmarks_68, sample.pose_para, RENDER_SIDE_PX)[:, :2] - 1.0
    low, high = points.min(axis=0), points.max(axis=0)
    depth = (RGB_CALIBRATION.rotation @ centre + RGB_CALIBRATION.translation)[2]
    scale = FACE_WIDTH_MM * RGB_CALIBRATION.intrinsics[0, 0] / depth / (high[0] - low[0])
    u, v = RGB_CALIBRATION.project(centre)
    # the affine map that scales the render and puts its landmark box centre on (u, v)
    box_centre = (low + high) / 2
    affine = np.array(
        [[scale, 0, u - scale * box_centre[0]], [0, scale, v - scale * box_centre[1]]]
    )
    width, height = FRAME_WH
    frame = cv2.resize(background(rng, max(FRAME_WH)), (width, height))
    warped = cv2.warpAffine(sample.image, affine, FRAME_WH, flags=cv2.INTER_AREA)
    inside = cv2.warpAffine(
        np.full(sample.image.shape[:2], 255, np.uint8), affine, FRAME_WH, flags=cv2.INTER_NEAREST
    )
    frame[inside > 0] = warped[inside > 0]
    return degrade(frame, rng), biwi_matrix(*job.pose_deg), centre


def write_frame(job: BiwiJob) -> tuple[float, float, float]:
    """Render and write one frame's PNG and pose file; return its pose."""
    cv2.setNumThreads(1)
    image, matrix, centre = render_frame(job)
    folder = Path(job.output_root) / job.sequence
    name = f"frame_{job.frame:05d}"
    if not cv2.imwrite(str(folder / f"{name}_rgb.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {folder / name}_rgb.png")
    write_pose_file(folder / f"{name}_pose.txt", matrix, centre)
    return job.pose_deg


def generate_biwi(
    root: str | os.PathLike, sequences: int, frames_per_sequence: int, seed: int, workers: int
) -> dict:
    """Write the set into ``root`` (``root/NN/...``, the hpdb folder) atomically; return its
    metrics (counts and the pose percentiles reached)."""
    jobs = biwi_jobs(sequences, frames_per_sequence, seed)
    with atomic_directory(root) as temp:
        for sequence in sorted({job.sequence for job in jobs}):
            (temp / sequence).mkdir()
            write_calibration(temp / sequence / "rgb.cal", RGB_CALIBRATION)
            write_calibration(temp / sequence / "depth.cal", DEPTH_CALIBRATION)
        jobs = [replace(job, output_root=str(temp)) for job in jobs]
        poses = np.array(map_with_progress(write_frame, jobs, workers, "synth BIWI"))
    return {
        "frames": len(jobs),
        "sequences": sequences,
        "pose_p5_p95_deg": {
            name: [round(float(v), 2) for v in np.percentile(poses[:, column], [5, 95])]
            for column, name in enumerate(BIWI_POSE)
        },
    }
