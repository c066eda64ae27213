"""What a sample says about its face, in no dataset's layout: :class:`Labels`.

Every dataset format (:mod:`headpose.datasets.registry`) reads its files into this one value, and
everything above the datasets (the crop protocols, the crop store, the framing statistics and
sweep, 300W_AUG) reads only this value, never a file layout:

* the pose: ``angles_deg`` (yaw, pitch, roll in this project's convention, docs/conventions.md),
  and, where a dataset stores it, the whole 3DDFA pose vector ``pose`` (pitch, yaw, roll in
  radians, then translation and scale, 3 to 7 values) that 300W_AUG rotates exactly;
* where the face is, exactly one of: **landmarks** (``landmarks_2d`` (N, 2) and/or
  ``landmarks_3d`` (M, 3), as stored, in 1-based image coordinates as 300W_LP stores them;
  a point with a negative coordinate is AFLW2000's placeholder of an invisible landmark) that
  a crop protocol frames, or a stored **crop box** (whole pixels ``x0, y0, x1, y1``, x1 and y1
  exclusive) that is itself the final crop as the dataset's own protocol defines it (BIWI's
  protocol-1 boxes, the arrays of an FSA-Net ``.npz``).

The checks every format applies to these values live here too (:func:`check_angles`,
:func:`check_landmarks`, :func:`check_box`), so a sample accepted by one format's reader obeys the
same bounds as any other's, and a face box given to the Python API or ``headpose predict`` the
same bound as a stored one (:func:`check_box`: within one image size of the image, as landmarks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from headpose.errors import HeadposeError

Box = tuple[float, float, float, float]

# Ten full turns: beyond it a value is no angle the datasets write (the real AFLW2000's largest
# is 972 deg, among the outliers the +-99 deg filter drops).
MAX_ABS_ANGLE_DEG = 3600.0


def visible_landmarks(points_xy: np.ndarray) -> np.ndarray:
    """Mask of the real landmarks of an (N, 2) array: AFLW2000 stores invisible ones as
    placeholders with a negative coordinate, such as ``(-1, 452)``."""
    return np.all(np.isfinite(points_xy), axis=1) & np.all(points_xy >= 0, axis=1)


@dataclass(frozen=True, eq=False)
class Labels:
    """The labels of one sample (see the module docstring); validated by the format that read
    them."""

    angles_deg: tuple[float, float, float]  # yaw, pitch, roll
    landmarks_2d: np.ndarray | None = None  # (N, 2), 1-based image coordinates, as stored
    landmarks_3d: np.ndarray | None = None  # (M, 3): x, y as landmarks_2d, then depth
    crop_box: Box | None = None
    pose: np.ndarray | None = None  # the 3DDFA pose vector, where the dataset stores it

    def __post_init__(self) -> None:
        has_landmarks = self.landmarks_2d is not None or self.landmarks_3d is not None
        if has_landmarks == (self.crop_box is not None):
            raise ValueError("Labels need landmarks or a crop box, not both")

    @property
    def has_landmarks(self) -> bool:
        """Whether a crop protocol frames this face (else its crop box is the crop)."""
        return self.crop_box is None

    @property
    def points_xy(self) -> np.ndarray:
        """The (N, 2) points a crop protocol frames, as stored (placeholders of invisible
        points included): the 2D landmarks, else the x, y of the 3D ones."""
        if self.landmarks_2d is not None:
            return self.landmarks_2d
        if self.landmarks_3d is None:
            raise ValueError("a sample with a stored crop box has no landmarks")
        return self.landmarks_3d[:, :2]

    @property
    def visible_points_xy(self) -> np.ndarray:
        """The (N', 2) visible points of :attr:`points_xy`."""
        points = self.points_xy
        return points[visible_landmarks(points)]


def angles_within(angles_deg: tuple[float, ...], max_angle_deg: float) -> bool:
    """True when every angle's magnitude is at most ``max_angle_deg`` (the 1969-image protocol)."""
    return all(math.isfinite(a) and abs(a) <= max_angle_deg for a in angles_deg)


def check_angles(angles_deg: tuple[float, ...], source: str) -> tuple[float, float, float]:
    """``angles_deg`` (yaw, pitch, roll) as floats, or one line naming ``source`` when they are
    not three finite numbers within :data:`MAX_ABS_ANGLE_DEG`."""
    if len(angles_deg) != 3 or not angles_within(angles_deg, MAX_ABS_ANGLE_DEG):
        raise HeadposeError(
            f"{source}: pose {[float(a) for a in angles_deg]} is no (yaw, pitch, roll) in "
            f"degrees (three finite numbers, at most {MAX_ABS_ANGLE_DEG:g} each)"
        )
    yaw, pitch, roll = (float(angle) for angle in angles_deg)
    return yaw, pitch, roll


def check_landmarks(
    points_xy: np.ndarray,
    source: str,
    image_size_wh: tuple[int, int] | None = None,
    what: str = "landmarks",
) -> None:
    """Refuse (one line naming ``source`` and the points ``what``) landmarks no crop can be made
    from: values that are not finite, fewer than 2 visible points, a visible box under one pixel
    wide or high, and, with ``image_size_wh`` (the image's width, height), any point
    (placeholders of invisible points included: the published crop frames them all) more than
    one image size beyond the image's edge."""
    if not np.all(np.isfinite(points_xy)):  # the published crop takes the box of every point
        raise HeadposeError(f"{source}: {what} holds values that are not finite")
    landmarks = points_xy[visible_landmarks(points_xy)]
    if len(landmarks) < 2:
        raise HeadposeError(f"{source}: fewer than 2 visible landmarks in {what}")
    extent = landmarks.max(axis=0) - landmarks.min(axis=0)
    if extent.min() < 1:
        raise HeadposeError(
            f"{source}: the visible landmarks span {extent[0]:g} x {extent[1]:g} pixels; a "
            "face box needs at least 1 x 1"
        )
    if image_size_wh is None:
        return
    width, height = image_size_wh
    if np.any(points_xy < (-width, -height)) or np.any(points_xy > (2 * width, 2 * height)):
        worst = points_xy[np.argmax(np.abs(points_xy / (width, height) - 0.5).max(axis=1))]
        raise HeadposeError(
            f"{source}: {what} point ({worst[0]:.6g}, {worst[1]:.6g}) lies far outside the "
            f"{width}x{height} image (at most one image size beyond its edge, placeholders "
            "of invisible points included)"
        )


def check_box(box: Box, image_size_wh: tuple[int, int], source: str, what: str = "box") -> None:
    """Refuse (one line naming ``source`` and the ``what`` box ``(x0, y0, x1, y1)``) a box no crop
    of a ``width`` x ``height`` image can be made from: an image without pixels, a box empty or
    not finite, wholly outside the image, or reaching more than one image size beyond its edge
    (the bound :func:`check_landmarks` sets on points, which keeps a crop's canvas within a few
    image sizes). A box partly outside the image, within that bound, passes."""
    width, height = image_size_wh
    x0, y0, x1, y1 = box
    shown = f"({x0:g}, {y0:g}, {x1:g}, {y1:g})"
    if width < 1 or height < 1:
        raise HeadposeError(f"{source}: the image has no pixels ({width}x{height}); {what} {shown}")
    if not all(math.isfinite(value) for value in box) or x1 <= x0 or y1 <= y0:
        raise HeadposeError(f"{source}: {what} {shown} is empty or not finite")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise HeadposeError(
            f"{source}: {what} {shown} lies wholly outside the {width}x{height} image"
        )
    if x0 < -width or y0 < -height or x1 > 2 * width or y1 > 2 * height:
        raise HeadposeError(
            f"{source}: {what} {shown} lies far outside the {width}x{height} image (at most one "
            "image size beyond its edge)"
        )
