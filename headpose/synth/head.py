"""Procedural 3D head: one identity's mesh, its 68 iBUG and 21 AFLW landmarks, and their visibility.

Model space is the one of ``docs/conventions.md``: x to the image right at the frontal pose, y up, z
toward the camera; units are millimetres and the origin is the centre of the skull. The skull is
an ellipsoid narrowed toward the jaw, parametrised by latitude ``u`` (up) and longitude ``v``
(``v = 0`` faces the camera, ``v < 0`` is the image-left side at the frontal pose). Hair covers
the top and back of it, so the back of a head never looks like a face.

A head is a list of :class:`Part` objects. Each part is convex, so back-face culling alone hides
its own hidden surfaces; parts attached to the skull (neck, ears, nose) are drawn before or after
it depending on whether their attachment faces the camera (see ``headpose.synth.scene``).
Flat features (eyes, brows, lips, nostrils) are :class:`Decal` polygons lifted slightly off the
surface. The landmarks are computed from the same feature definitions, so they sit on the
rendered eyes, brows, nose, mouth and jaw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import ConvexHull

LANDMARK_COUNT = 68
AFLW_LANDMARK_COUNT = 21

# The 68-point index of each point after a horizontal mirror (jaw, brows, nose, eyes, mouth).
MIRRORED_68 = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)

_SKULL_ROWS, _SKULL_COLUMNS = 26, 52  # latitude x longitude quads of the skull mesh
_CHIN_LATITUDE_RAD = -1.0
_JAW_LONGITUDE_RAD = 1.5  # the jaw line starts just in front of the ears


@dataclass(frozen=True)
class Identity:
    """Proportions and colours of one synthetic person (lengths in mm, colours RGB 0-255)."""

    half_width_mm: float
    half_height_mm: float
    half_depth_mm: float
    jaw_taper: float  # how much narrower the jaw is than the cranium
    eye_latitude_rad: float
    eye_longitude_rad: float
    eye_half_width_mm: float
    eye_half_height_mm: float
    brow_lift_mm: float
    brow_thickness_mm: float
    brow_arch_mm: float
    nose_base_latitude_rad: float
    nose_protrusion_mm: float
    nose_half_width_mm: float
    mouth_latitude_rad: float
    mouth_half_width_mm: float
    lip_thickness_mm: float
    mouth_open_mm: float
    ear_half_height_mm: float
    hairline_rad: float  # latitude of the front hairline
    hair_back_rad: float  # latitude the hair reaches down to at the back
    hair_volume_mm: float
    neck_radius_mm: float
    skin_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    lip_rgb: tuple[float, float, float]
    iris_rgb: tuple[float, float, float]


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw a random identity: proportions, feature placement, skin, hair and eye colours."""
    tone = rng.uniform(0.0, 1.0)  # light to dark skin
    skin = np.array([235, 200, 175]) * (1 - tone) + np.array([105, 70, 50]) * tone
    skin = skin * rng.uniform(0.92, 1.08, size=3)
    hair_palette = np.array(
        [[25, 20, 18], [60, 40, 25], [110, 75, 40], [170, 130, 80], [200, 180, 140], [140, 60, 30],
         [150, 150, 150], [45, 45, 50]]
    )  # fmt: skip
    hair = hair_palette[rng.integers(len(hair_palette))] * rng.uniform(0.8, 1.15, size=3)
    lip = skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.9, 1.1)
    iris_palette = np.array([[70, 45, 25], [40, 30, 20], [70, 110, 150], [80, 110, 70]])
    iris = iris_palette[rng.integers(len(iris_palette))]
    half_width = rng.uniform(68, 80)
    return Identity(
        half_width_mm=half_width,
        half_height_mm=rng.uniform(98, 112),
        half_depth_mm=rng.uniform(88, 100),
        jaw_taper=rng.uniform(0.15, 0.4),
        eye_latitude_rad=rng.uniform(0.0, 0.08),
        eye_longitude_rad=rng.uniform(0.38, 0.46),
        eye_half_width_mm=rng.uniform(11.5, 14.5),
        eye_half_height_mm=rng.uniform(4.5, 6.5),
        brow_lift_mm=rng.uniform(13, 19),
        brow_thickness_mm=rng.uniform(3.5, 6.5),
        brow_arch_mm=rng.uniform(1.0, 4.0),
        nose_base_latitude_rad=rng.uniform(-0.4, -0.32),
        nose_protrusion_mm=rng.uniform(20, 30),
        nose_half_width_mm=rng.uniform(15, 20),
        mouth_latitude_rad=rng.uniform(-0.66, -0.58),
        mouth_half_width_mm=rng.uniform(21, 27),
        lip_thickness_mm=rng.uniform(4.5, 7.5),
        mouth_open_mm=rng.choice([0.0, rng.uniform(1.0, 6.0)]),
        ear_half_height_mm=rng.uniform(27, 33),
        hairline_rad=rng.uniform(0.5, 0.75),
        hair_back_rad=rng.uniform(-1.0, -0.3),
        hair_volume_mm=rng.uniform(3, 12),
        neck_radius_mm=half_width * rng.uniform(0.45, 0.52),
        skin_rgb=tuple(np.clip(skin, 0, 255)),
        hair_rgb=tuple(np.clip(hair, 0, 255)),
        lip_rgb=tuple(np.clip(lip, 0, 255)),
        iris_rgb=tuple(iris),
    )


@dataclass
class Decal:
    """A flat coloured polygon lying on a part (eye, brow, lip): drawn when its normal is seen."""

    vertices: np.ndarray  # (K, 3) model space
    rgb: tuple[float, float, float]
    normal: np.ndarray  # (3,) unit, model space


@dataclass
class Part:
    """A convex piece of the head: polygons with equal vertex counts, albedo and outward normals.

    ``attachment_normal`` is None for the skull; for the other parts it is the direction that,
    when it faces the camera (camera-space z above ``front_above``), puts the part in front of
    the skull, so it is drawn after it.
    """

    vertices: np.ndarray  # (N, 3)
    polygons: np.ndarray  # (M, K) vertex indices
    albedo_rgb: np.ndarray  # (M, 3)
    normals: np.ndarray  # (M, 3) unit outward normals
    attachment_normal: np.ndarray | None = None
    front_above: float = 0.0
    decals: list[Decal] = field(default_factory=list)


@dataclass
class Head:
    """A renderable head with its landmarks in model space."""

    parts: list[Part]  # parts[0] is the skull
    landmarks_68: np.ndarray  # (68, 3)
    landmarks_aflw: np.ndarray  # (21, 3)
    aflw_normals: np.ndarray  # (21, 3) unit normals deciding each AFLW point's visibility


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _polygon_normals(vertices: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Newell normals of polygons (robust for degenerate quads at the poles)."""
    corners = vertices[polygons]  # (M, K, 3)
    following = np.roll(corners, -1, axis=1)
    normal = np.stack(
        [
            ((corners[..., 1] - following[..., 1]) * (corners[..., 2] + following[..., 2])).sum(1),
            ((corners[..., 2] - following[..., 2]) * (corners[..., 0] + following[..., 0])).sum(1),
            ((corners[..., 0] - following[..., 0]) * (corners[..., 1] + following[..., 1])).sum(1),
        ],
        axis=1,
    )
    return _normalise(normal)


def _outward(vertices: np.ndarray, polygons: np.ndarray, inside: np.ndarray):
    """Polygons re-wound so their normals point away from ``inside``, and those normals."""
    normals = _polygon_normals(vertices, polygons)
    centroids = vertices[polygons].mean(axis=1)
    inward = np.einsum("ij,ij->i", normals, centroids - inside) < 0
    polygons = np.where(inward[:, None], polygons[:, ::-1], polygons)
    normals = np.where(inward[:, None], -normals, normals)
    return polygons, normals


class _Skin:
    """The skull surface of one identity: points and normals by (latitude, longitude)."""

    def __init__(self, identity: Identity):
        self.identity = identity

    def point(self, u, v, lift_mm=0.0) -> np.ndarray:
        """Surface points at latitude ``u``, longitude ``v`` (radians), lifted along the normal."""
        ident = self.identity
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        cos_u = np.cos(u)
        unit_y = np.sin(u)
        taper = 1.0 - ident.jaw_taper * np.clip(-unit_y - 0.1, 0.0, None)
        points = np.stack(
            [
                ident.half_width_mm * cos_u * np.sin(v) * taper,
                ident.half_height_mm * unit_y,
                ident.half_depth_mm * cos_u * np.cos(v) * (0.85 + 0.15 * taper),
            ],
            axis=-1,
        )
        return points + np.asarray(lift_mm)[..., None] * self.normal(u, v)

    def normal(self, u, v) -> np.ndarray:
        """Outward unit normals (the ellipsoid gradient: exact enough for lifts and visibility)."""
        ident = self.identity
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        cos_u = np.cos(u)
        gradient = np.stack(
            [
                cos_u * np.sin(v) / ident.half_width_mm,
                np.sin(u) / ident.half_height_mm,
                cos_u * np.cos(v) / ident.half_depth_mm,
            ],
            axis=-1,
        )
        return _normalise(gradient)

    def at_offset(self, center_uv, offsets_mm, lift_mm=0.0) -> np.ndarray:
        """Points at (dx, dy) millimetre offsets on the surface around a (u, v) centre."""
        u0, v0 = center_uv
        offsets = np.asarray(offsets_mm, dtype=np.float64).reshape(-1, 2)
        u = u0 + offsets[:, 1] / self.identity.half_height_mm
        v = v0 + offsets[:, 0] / (self.identity.half_width_mm * math.cos(u0))
        return self.point(u, v, lift_mm)

    def decal(self, center_uv, offsets_mm, lift_mm, rgb) -> Decal:
        return Decal(
            vertices=self.at_offset(center_uv, offsets_mm, lift_mm),
            rgb=tuple(rgb),
            normal=self.normal(*center_uv),
        )


def _hairline_rad(identity: Identity, longitude_rad: np.ndarray) -> np.ndarray:
    """Latitude of the hair's lower edge at each longitude: forehead, above the ears, the back."""
    knots_rad = [0.0, 1.0, 1.5, 2.2, math.pi]
    latitudes = [
        identity.hairline_rad,
        identity.hairline_rad - 0.1,
        0.2,
        identity.hair_back_rad,
        identity.hair_back_rad,
    ]
    return np.interp(np.abs(longitude_rad), knots_rad, latitudes)


def _skull(skin: _Skin, rng: np.random.Generator) -> Part:
    ident = skin.identity
    u = np.linspace(-math.pi / 2, math.pi / 2, _SKULL_ROWS + 1)
    v = np.linspace(-math.pi, math.pi, _SKULL_COLUMNS, endpoint=False)
    grid_u, grid_v = np.meshgrid(u, v, indexing="ij")
    hairiness = np.clip((grid_u - _hairline_rad(ident, grid_v)) / 0.08 + 0.5, 0.0, 1.0)
    vertices = skin.point(grid_u, grid_v, lift_mm=ident.hair_volume_mm * hairiness).reshape(-1, 3)
    rows = np.arange(_SKULL_ROWS)[:, None]
    columns = np.arange(_SKULL_COLUMNS)[None, :]
    following = (columns + 1) % _SKULL_COLUMNS
    quads = np.stack(
        [
            rows * _SKULL_COLUMNS + columns,
            rows * _SKULL_COLUMNS + following,
            (rows + 1) * _SKULL_COLUMNS + following,
            (rows + 1) * _SKULL_COLUMNS + columns,
        ],
        axis=-1,
    ).reshape(-1, 4)
    polygons, normals = _outward(vertices, quads, np.zeros(3))
    is_hair = hairiness.reshape(-1)[polygons].mean(axis=1) > 0.5
    jitter = rng.normal(1.0, 1.0, size=(len(polygons), 1))
    albedo = np.where(
        is_hair[:, None],
        np.array(ident.hair_rgb) * (1.0 + 0.06 * jitter),
        np.array(ident.skin_rgb) * (1.0 + 0.025 * jitter),
    )
    return Part(vertices, polygons, albedo, normals)


def _convex_part(points: np.ndarray, rgb, attachment_normal, front_above, rng) -> Part:
    """A convex hull of ``points`` as a triangle part."""
    hull = ConvexHull(points)
    polygons, normals = _outward(points, hull.simplices, points.mean(axis=0))
    albedo = np.array(rgb) * (1.0 + 0.02 * rng.normal(size=(len(polygons), 1)))
    attachment = _normalise(np.asarray(attachment_normal, dtype=np.float64))
    return Part(points, polygons, albedo, normals, attachment, front_above)


def _ellipsoid_points(center, axes, radii, rows=6, columns=10) -> np.ndarray:
    """Points on an ellipsoid with the given centre, orthonormal axes (3x3 rows) and radii."""
    u = np.linspace(-math.pi / 2, math.pi / 2, rows + 1)
    v = np.linspace(-math.pi, math.pi, columns, endpoint=False)
    grid_u, grid_v = np.meshgrid(u, v, indexing="ij")
    unit = np.stack(
        [np.cos(grid_u) * np.cos(grid_v), np.sin(grid_u), np.cos(grid_u) * np.sin(grid_v)], -1
    ).reshape(-1, 3)
    return np.asarray(center) + (unit * radii) @ np.asarray(axes)


def _ears(skin: _Skin, rng) -> tuple[list[Part], list[np.ndarray]]:
    """Two ears (image-left first) and their lobe points (the AFLW ear landmarks)."""
    ident = skin.identity
    parts, lobes = [], []
    for side in (-1.0, 1.0):
        root = skin.point(-0.05, side * math.pi / 2)
        outward = _normalise(np.array([side, 0.0, 0.3]))
        up = _normalise(np.array([0.0, 1.0, -0.25]))
        back = np.cross(outward, up) * side
        radii = np.array([4.0, ident.ear_half_height_mm, 0.55 * ident.ear_half_height_mm])
        center = root + outward * 3.0 - back * 2.0
        points = _ellipsoid_points(center, np.stack([outward, up, back]), radii)
        ear = _convex_part(points, np.array(ident.skin_rgb) * 0.93, [side, 0.0, 0.2], 0.0, rng)
        parts.append(ear)
        lobes.append(center - up * 0.8 * ident.ear_half_height_mm + outward * radii[0])
    return parts, lobes


def _neck(skin: _Skin, rng) -> Part:
    """A cylinder under the skull whose top follows the skull's lower surface."""
    ident = skin.identity
    angles = np.linspace(0.0, 2 * math.pi, 16, endpoint=False)
    center_z = -0.2 * ident.half_depth_mm
    x = ident.neck_radius_mm * np.cos(angles)
    z = center_z + ident.neck_radius_mm * 1.05 * np.sin(angles)
    inside = np.clip(1.0 - (x / ident.half_width_mm) ** 2 - (z / ident.half_depth_mm) ** 2, 0, 1)
    top_y = -ident.half_height_mm * np.sqrt(inside) * 0.9
    bottom_y = np.full_like(x, -2.2 * ident.half_height_mm)
    points = np.concatenate([np.stack([x, top_y, z], 1), np.stack([x, bottom_y, z], 1)])
    return _convex_part(points, np.array(ident.skin_rgb) * 0.85, [0.0, -1.0, 0.0], 0.2, rng)


def _almond(half_width, half_height, count) -> tuple[np.ndarray, Callable, Callable]:
    """Eye outline offsets (dx, dy) in mm, and the upper/lower lid height at a given dx."""

    def upper(dx):
        return half_height * (1.0 - (dx / half_width) ** 2) ** 0.7

    def lower(dx):
        return -0.75 * half_height * (1.0 - (dx / half_width) ** 2) ** 0.8

    dx = half_width * np.cos(np.linspace(math.pi, 0.0, count))
    outline = np.concatenate(
        [np.stack([dx, upper(dx)], 1), np.stack([dx[::-1][1:-1], lower(dx[::-1][1:-1])], 1)]
    )
    return outline, upper, lower


def _circle(radius, center=(0.0, 0.0), count=14) -> np.ndarray:
    angles = np.linspace(0.0, 2 * math.pi, count, endpoint=False)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1) + center


def _eyes(skin: _Skin, brow_rgb) -> tuple[list[Decal], np.ndarray, np.ndarray]:
    """Decals of both eyes and brows; landmarks 17-26 and 36-47 (68 layout) and the eye centres."""
    ident = skin.identity
    width, height = ident.eye_half_width_mm, ident.eye_half_height_mm
    outline, upper, lower = _almond(width, height, 9)
    third = width / 3
    eye_points = np.array(
        [
            [-width, 0.0],
            [-third, upper(-third)],
            [third, upper(third)],
            [width, 0.0],
            [third, lower(third)],
            [-third, lower(-third)],
        ]
    )
    brow_width = width * 1.45
    brow_dx = np.linspace(-brow_width, brow_width, 9)
    brow_arch = ident.brow_arch_mm * (1.0 - (brow_dx / brow_width) ** 2)
    decals, brows, eyes, centers = [], [], [], []
    for side in (-1.0, 1.0):
        center = (ident.eye_latitude_rad, side * ident.eye_longitude_rad)
        lash = np.concatenate(
            [outline[:9] + [0.0, 0.3], outline[8::-1] + [0.0, 1.6 + 0.1 * height]]
        )
        iris_radius = 0.72 * height
        decals += [
            skin.decal(center, outline, 0.6, (235, 232, 225)),
            skin.decal(center, _circle(iris_radius, (0.0, 0.1 * height)), 0.9, ident.iris_rgb),
            skin.decal(center, _circle(0.45 * iris_radius, (0.0, 0.1 * height)), 1.1, (10, 10, 10)),
            skin.decal(center, lash, 1.2, np.array(ident.hair_rgb) * 0.5),
        ]
        brow_center = (center[0] + ident.brow_lift_mm / ident.half_height_mm, center[1])
        # thicker at the inner end (toward the nose, i.e. toward -side)
        thickness = ident.brow_thickness_mm * (1.0 - 0.35 * side * brow_dx / brow_width) / 2
        brow_outline = np.concatenate(
            [
                np.stack([brow_dx, brow_arch + thickness], 1),
                np.stack([brow_dx[::-1], (brow_arch - thickness)[::-1]], 1),
            ]
        )
        decals.append(skin.decal(brow_center, brow_outline, 1.0, brow_rgb))
        brows.append(skin.at_offset(brow_center, np.stack([brow_dx[::2], brow_arch[::2]], 1), 1.0))
        eyes.append(skin.at_offset(center, eye_points, 0.6))
        centers.append(skin.at_offset(center, [[0.0, 0.1 * height]], 1.1)[0])
    return decals, np.concatenate(brows + eyes), np.array(centers)


def _nose(skin: _Skin, rng) -> tuple[Part, np.ndarray]:
    """The nose as a convex hull, with nostril decals; landmarks 27-35 (68 layout)."""
    ident = skin.identity
    root_u = ident.eye_latitude_rad + 0.03
    base_u = ident.nose_base_latitude_rad
    protrusion, half_width = ident.nose_protrusion_mm, ident.nose_half_width_mm
    forward = np.array([0.0, 0.0, 1.0])
    root = skin.point(root_u, 0.0, 1.5)
    tip = skin.point(base_u + 0.06, 0.0) + forward * protrusion
    subnasale = skin.point(base_u, 0.0) + forward * 0.4 * protrusion
    side_v = half_width / ident.half_width_mm
    alae = [skin.point(base_u + 0.02, s * side_v) + forward * 0.3 * protrusion for s in (-1, 1)]
    bridge = [root + (tip - root) * fraction for fraction in (1 / 3, 2 / 3)]
    between = [(ala + subnasale) / 2 - [0.0, 1.0, 0.0] for ala in alae]
    landmarks = np.array([root, *bridge, tip, alae[0], between[0], subnasale, between[1], alae[1]])
    sides = [
        skin.point(u, s * v, 0.0)
        for s in (-1, 1)
        for u, v in ((root_u, 0.12), (base_u, side_v * 1.1), ((root_u + base_u) / 2, 0.15))
    ]
    ridge_sides = [
        root + (tip - root) * 0.6 + [s * 0.4 * half_width, 0.0, -0.35 * protrusion] for s in (-1, 1)
    ]
    points = np.concatenate([landmarks, sides, ridge_sides])
    nose = _convex_part(points, np.array(ident.skin_rgb) * [1.02, 0.97, 0.95], forward, -0.1, rng)
    nostril_normal = _normalise(np.array([0.0, -1.0, 0.35]))
    for between_point in between:
        ellipse = _circle(1.0, count=10) * [0.28 * half_width, 0.12 * protrusion]
        vertices = (
            between_point
            + [0.0, -0.8, 0.0]
            + np.stack([ellipse[:, 0], np.zeros(len(ellipse)), ellipse[:, 1]], 1)
        )
        nose.decals.append(Decal(vertices, (40, 20, 20), nostril_normal))
    return nose, landmarks


def _mouth(skin: _Skin) -> tuple[list[Decal], np.ndarray, np.ndarray]:
    """Lip decals; landmarks 48-67 (68 layout) and the mouth centre."""
    ident = skin.identity
    center = (ident.mouth_latitude_rad, 0.0)
    width, lip, opening = ident.mouth_half_width_mm, ident.lip_thickness_mm, ident.mouth_open_mm

    def shape(dx):
        return np.clip(1.0 - (dx / width) ** 2, 0.0, None) ** 0.6

    def outer_upper(dx):
        return opening / 2 + lip * shape(dx) * (1.0 - 0.15 * np.exp(-((dx / (0.15 * width)) ** 2)))

    def outer_lower(dx):
        return -opening / 2 - 1.15 * lip * shape(dx)

    def inner(dx, sign):
        return sign * opening / 2 * shape(dx / 0.85)

    def lifted(points):
        return 1.0 + 3.0 * shape(points[:, 0])

    dx = width * np.cos(np.linspace(math.pi, 0.0, 13))
    inner_dx = 0.85 * dx
    upper_lip = np.concatenate(
        [
            np.stack([dx, outer_upper(dx)], 1),
            np.stack([inner_dx[::-1], inner(inner_dx, 1)[::-1]], 1),
        ]
    )
    lower_lip = np.concatenate(
        [
            np.stack([dx, outer_lower(dx)], 1),
            np.stack([inner_dx[::-1], inner(inner_dx, -1)[::-1]], 1),
        ]
    )
    gap = np.concatenate(
        [
            np.stack([inner_dx, inner(inner_dx, 1)], 1),
            np.stack([inner_dx[::-1], inner(inner_dx, -1)[::-1]], 1),
        ]
    )
    lip_rgb = ident.lip_rgb
    decals = [
        skin.decal(center, gap, lifted(gap) - 0.3, (45, 20, 20)),
        skin.decal(center, upper_lip, lifted(upper_lip), np.array(lip_rgb) * 0.9),
        skin.decal(center, lower_lip, lifted(lower_lip), lip_rgb),
    ]
    third = width / 3
    outer_dx = np.array([-width, -2 * third, -third, 0.0, third, 2 * third, width])
    outer_points = np.concatenate(
        [
            np.stack([outer_dx, outer_upper(outer_dx)], 1),
            np.stack([outer_dx[-2:0:-1], outer_lower(outer_dx[-2:0:-1])], 1),
        ]
    )
    outer_points[[0, 6], 1] = 0.0  # the corners
    inner_dx_points = np.array([-0.85 * width, -third, 0.0, third, 0.85 * width])
    inner_points = np.concatenate(
        [
            np.stack([inner_dx_points, inner(inner_dx_points, 1)], 1),
            np.stack([inner_dx_points[-2:0:-1], inner(inner_dx_points[-2:0:-1], -1)], 1),
        ]
    )
    inner_points[[0, 4], 1] = 0.0
    points = np.concatenate([outer_points, inner_points])
    landmarks = skin.at_offset(center, points, lifted(points))
    mouth_center = skin.at_offset(center, [[0.0, 0.0]], 4.0)[0]
    return decals, landmarks, mouth_center


def _jaw(skin: _Skin) -> np.ndarray:
    """Landmarks 0-16: from in front of the image-left ear, down over the chin, up to the right."""
    t = np.linspace(-1.0, 1.0, 17)
    longitude = _JAW_LONGITUDE_RAD * np.sign(t) * np.abs(t) ** 0.85
    latitude = -0.05 + (_CHIN_LATITUDE_RAD + 0.05) * (1.0 - np.abs(t) ** 1.8)
    return skin.point(latitude, longitude)


def build_head(identity: Identity, rng: np.random.Generator) -> Head:
    """Build the mesh, decals and landmarks of ``identity`` (``rng`` only jitters albedo)."""
    skin = _Skin(identity)
    skull = _skull(skin, rng)
    brow_rgb = np.array(identity.hair_rgb) * 0.7
    eye_decals, brow_eye_points, eye_centers = _eyes(skin, brow_rgb)
    mouth_decals, mouth_points, mouth_center = _mouth(skin)
    skull.decals = eye_decals + mouth_decals
    nose, nose_points = _nose(skin, rng)
    ears, lobes = _ears(skin, rng)
    jaw = _jaw(skin)
    brows, eyes = brow_eye_points[:10], brow_eye_points[10:]
    landmarks_68 = np.concatenate([jaw, brows, nose_points, eyes, mouth_points])
    aflw_indices_68 = [17, 19, 21, 22, 24, 26, 36, None, 39, 42, None, 45]
    aflw = [landmarks_68[i] if i is not None else None for i in aflw_indices_68]
    aflw[7], aflw[10] = eye_centers
    aflw += [lobes[0], landmarks_68[31], landmarks_68[30], landmarks_68[35], lobes[1]]
    aflw += [landmarks_68[48], mouth_center, landmarks_68[54], landmarks_68[8]]
    landmarks_aflw = np.array(aflw)
    normals = skin.normal(*_latlong(skin, landmarks_aflw))
    normals[12] = _normalise(np.array([-1.0, 0.0, 0.3]))
    normals[16] = _normalise(np.array([1.0, 0.0, 0.3]))
    normals[13] = _normalise(np.array([-0.8, 0.0, 0.6]))
    normals[15] = _normalise(np.array([0.8, 0.0, 0.6]))
    normals[14] = np.array([0.0, 0.0, 1.0])
    return Head(
        parts=[skull, _neck(skin, rng), *ears, nose],
        landmarks_68=landmarks_68,
        landmarks_aflw=landmarks_aflw,
        aflw_normals=normals,
    )


def _latlong(skin: _Skin, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate (latitude, longitude) of points near the skull surface."""
    ident = skin.identity
    unit = points / [ident.half_width_mm, ident.half_height_mm, ident.half_depth_mm]
    latitude = np.arcsin(np.clip(unit[:, 1] / np.linalg.norm(unit, axis=1), -1.0, 1.0))
    longitude = np.arctan2(unit[:, 0], unit[:, 2])
    return latitude, longitude
