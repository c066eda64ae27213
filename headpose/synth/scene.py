"""Synthetic scenes: cluttered backgrounds, a torso, the rasterised head, and camera degradations.

The head is drawn with flat-shaded polygons (Lambert: ambient plus one directional light fixed
in camera space, so shading changes with the head's pose) by a painter's algorithm over convex
parts: every part hides its own far side by back-face culling, and the parts attached to the
skull are drawn before it or after it depending on whether their attachment faces the camera.
Vertices are projected with :func:`headpose.geometry.project_points`, the dataset convention, so
the rendered pixels and the stored labels agree by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from headpose.geometry import PITCH, ROLL, YAW, project_points, rotation_matrix
from headpose.synth.head import Head, Part

_SUBPIXEL_BITS = 4  # cv2 fixed-point vertices: 1/16 pixel
_SUBPIXEL = 1 << _SUBPIXEL_BITS


@dataclass(frozen=True)
class Lighting:
    """A directional light in camera space (x right, y up, z toward the camera)."""

    direction: np.ndarray  # (3,) unit
    ambient: float  # share of light that reaches every surface
    tint_rgb: np.ndarray  # (3,) colour of the light, around 1


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A random light from the camera's half-space, with random ambient share and tint."""
    direction = np.array([rng.uniform(-1.2, 1.2), rng.uniform(-0.6, 1.2), rng.uniform(0.3, 1.3)])
    return Lighting(
        direction=direction / np.linalg.norm(direction),
        ambient=rng.uniform(0.25, 0.55),
        tint_rgb=rng.uniform(0.85, 1.15, size=3),
    )


def _pixels(points_xy: np.ndarray) -> np.ndarray:
    """1-based image coordinates to cv2 fixed-point pixel coordinates (0-based, 1/16 px)."""
    return np.round((points_xy - 1.0) * _SUBPIXEL).astype(np.int32)


def _shade(albedo_rgb: np.ndarray, normals_camera: np.ndarray, lighting: Lighting) -> np.ndarray:
    diffuse = np.clip(normals_camera @ lighting.direction, 0.0, None)
    brightness = lighting.ambient + (1.0 - lighting.ambient) * diffuse
    return np.clip(albedo_rgb * brightness[..., None] * lighting.tint_rgb, 0, 255)


def _draw_part(image, part: Part, pose_para, rotation, lighting: Lighting) -> None:
    height = image.shape[0]
    pixels = _pixels(project_points(part.vertices, pose_para, height)[:, :2])
    normals_camera = part.normals @ rotation.T
    visible = normals_camera[:, 2] > 0.0
    colors = _shade(part.albedo_rgb[visible], normals_camera[visible], lighting)
    for polygon, color in zip(pixels[part.polygons[visible]], colors.tolist(), strict=True):
        cv2.fillConvexPoly(image, polygon, color, cv2.LINE_8, _SUBPIXEL_BITS)
    for decal in part.decals:
        normal_camera = rotation @ decal.normal
        if normal_camera[2] > 0.0:
            outline = _pixels(project_points(decal.vertices, pose_para, height)[:, :2])
            color = _shade(np.asarray(decal.rgb), normal_camera, lighting).tolist()
            cv2.fillPoly(image, [outline], color, cv2.LINE_AA, _SUBPIXEL_BITS)


def draw_head(image: np.ndarray, head: Head, pose_para: np.ndarray, lighting: Lighting) -> None:
    """Rasterise ``head`` at ``pose_para`` into the RGB ``image`` in place."""
    pose = np.asarray(pose_para, dtype=np.float64).ravel()
    rotation = rotation_matrix(pose[PITCH], pose[YAW], pose[ROLL])
    skull, *attachments = head.parts

    def in_front(part: Part) -> bool:
        return (rotation @ part.attachment_normal)[2] > part.front_above

    def depth(part: Part) -> float:
        return float((part.vertices.mean(axis=0) @ rotation.T)[2])

    behind = sorted((p for p in attachments if not in_front(p)), key=depth)
    front = sorted((p for p in attachments if in_front(p)), key=depth)
    for part in [*behind, skull, *front]:
        _draw_part(image, part, pose, rotation, lighting)


def _random_color(rng: np.random.Generator) -> list[float]:
    return rng.uniform(0, 255, size=3).tolist()


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered RGB background: gradient, smooth colour noise, random shapes and lines."""
    cells = int(rng.integers(2, 24))
    ramp_angle = rng.uniform(0, 2 * math.pi)
    coordinates = np.linspace(0.0, 1.0, cells, dtype=np.float32)
    ramp = coordinates[None, :] * math.cos(ramp_angle) + coordinates[:, None] * math.sin(ramp_angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    start, end = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    coarse = start + (end - start) * ramp[..., None]
    coarse += rng.standard_normal((cells, cells, 3), dtype=np.float32) * rng.uniform(5, 45)
    coarse = np.clip(coarse, 0, 255).astype(np.uint8)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(4, 18))):
        _draw_clutter(image, rng, size)
    return image


def _draw_clutter(image: np.ndarray, rng: np.random.Generator, size: int) -> None:
    kind = rng.integers(5)
    color = _random_color(rng)
    center = rng.integers(-size // 8, size + size // 8, size=2).tolist()
    extent = int(rng.integers(size // 20, size // 3))
    thickness = int(rng.choice([-1, -1, 2, 5]))
    if kind == 0:
        corner = (center[0] + extent, center[1] + int(rng.integers(size // 20, size // 2)))
        cv2.rectangle(image, center, corner, color, thickness)
    elif kind == 1:
        cv2.circle(image, center, extent, color, thickness, cv2.LINE_AA)
    elif kind == 2:
        axes = (extent, int(rng.integers(size // 30, size // 4)))
        cv2.ellipse(image, center, axes, rng.uniform(0, 180), 0, 360, color, thickness)
    elif kind == 3:
        end = rng.integers(0, size, size=2).tolist()
        cv2.line(image, center, end, color, int(rng.integers(1, 12)), cv2.LINE_AA)
    else:
        points = rng.integers(-size // 8, size + size // 8, size=(int(rng.integers(3, 7)), 2))
        cv2.fillPoly(image, [points.astype(np.int32)], color, cv2.LINE_AA)


def draw_torso(
    image: np.ndarray, rng: np.random.Generator, neck_xy: tuple[float, float], width_px: float
) -> None:
    """Shoulders below the neck (independent of the head's pose, as a body would be)."""
    color = np.array(_random_color(rng))
    center = (int(neck_xy[0] + rng.normal(0, 0.1) * width_px), int(neck_xy[1] + 0.55 * width_px))
    axes = (int(width_px * rng.uniform(1.0, 1.4)), int(width_px * 0.6))
    cv2.ellipse(image, center, axes, rng.uniform(-8, 8), 180, 360, color.tolist(), -1, cv2.LINE_AA)
    cv2.rectangle(
        image,
        (center[0] - axes[0], center[1]),
        (center[0] + axes[0], image.shape[0]),
        (color * 0.9).tolist(),
        -1,
    )


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera imperfections: random Gaussian blur and (uniform, per-channel) sensor noise."""
    sigma = rng.uniform(0.0, 1.4)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise_amplitude = int(rng.integers(0, 13))
    noise = rng.integers(-noise_amplitude, noise_amplitude + 1, size=image.shape, dtype=np.int16)
    return cv2.add(image, noise, dtype=cv2.CV_8U)
