"""Error metrics: mean absolute errors (MAE) of yaw, pitch and roll, and the rotation errors
beside them (geodesic error and MAEV), overall and on subsets.

Every MAE of the project (validation during training, the evaluate stage, the export parity
run, the benchmark) is computed here from the absolute errors in degrees: per-angle sums and a
count (:func:`error_sums`, which multi-process validation adds up over the processes) turned
into means (:func:`mae_from_sums`).

The rotation errors compare the two rotation matrices instead of the angles
(:func:`rotation_errors_deg`; the matrices are built by :func:`headpose.geometry.rotation_matrices`
in the datasets' convention, ``docs/conventions.md``): the geodesic error is the angle of
``R_true^T R_pred``, MAEV the mean over the three columns of the angle between the matching
columns of ``R_true`` and ``R_pred``. Unlike Euler MAE they are distances between rotations:
two Euler triples of one rotation (gimbal lock at |yaw| = 90 degrees in this convention, or the
second triple ``(p + 180, 180 - y, r + 180)``) score 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headpose.errors import HeadposeError
from headpose.geometry import ANGLE_NAMES, rotation_matrices

NEAR_FRONTAL_LIMIT_DEG = 30  # the "|angles| < 30" subset
# The names of the MAEs of one set as validation records and the framing sweep reports them.
MAE_KEYS = (*(f"mae_{angle}" for angle in ANGLE_NAMES), "mae_mean")
# The rotation errors beside the MAE: their keys in the metrics files (each ``{"count", "mean"}``,
# degrees), the framing sweep's rows and ``headpose compare --metric``.
ROTATION_ERROR_KEYS = ("geodesic", "maev")
# The per-image CSV's columns of the rotation errors, in the order of ROTATION_ERROR_KEYS.
ROTATION_ERROR_COLUMNS = ("geodesic_error_deg", "maev_deg")


@dataclass
class PoseErrors:
    """True and predicted (yaw, pitch, roll) degrees of each evaluated sample."""

    stems: list[str]
    true_deg: np.ndarray  # (N, 3)
    predicted_deg: np.ndarray  # (N, 3)

    @property
    def absolute_deg(self) -> np.ndarray:
        return absolute_errors_deg(self.predicted_deg, self.true_deg)

    @property
    def rotation_deg(self) -> np.ndarray:
        """(N, 2) geodesic error and MAEV of each sample (:func:`rotation_errors_deg`)."""
        return rotation_errors_deg(self.predicted_deg, self.true_deg)


def absolute_errors_deg(predicted_deg: np.ndarray, true_deg: np.ndarray) -> np.ndarray:
    """|predicted - true| of each angle of each sample (float64 degrees)."""
    return np.abs(np.asarray(predicted_deg, np.float64) - np.asarray(true_deg, np.float64))


def _matrices(angles_deg: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices of (N, 3) (yaw, pitch, roll) degrees, in the datasets'
    convention (:func:`headpose.geometry.rotation_matrices` takes pitch, yaw, roll radians)."""
    radians = np.radians(np.asarray(angles_deg, dtype=np.float64).reshape(-1, 3))
    yaw, pitch, roll = radians.T
    return rotation_matrices(pitch, yaw, roll)


def _angle_between(cos_part: np.ndarray, sin_part: np.ndarray) -> np.ndarray:
    """Degrees of ``atan2(sin_part, cos_part)``: the angle whose cosine and sine are proportional
    to the two parts, exact near 0 and 180 degrees where an ``acos`` of the cosine loses digits
    (``acos(1 - 1e-16)`` is 0 or 1.5e-8 rad, nothing in between)."""
    return np.degrees(np.arctan2(sin_part, cos_part))


def rotation_errors_deg(predicted_deg: np.ndarray, true_deg: np.ndarray) -> np.ndarray:
    """(N, 2): the geodesic error and MAEV (degrees) of each of N predicted (yaw, pitch, roll)
    triples against the true ones (both (N, 3) degrees, or one triple each).

    Geodesic error: the angle of ``D = R_true^T R_pred``, ``acos((trace(D) - 1) / 2)`` clipped to
    [0, 180], computed as ``atan2(|axis(D)| / 2, (trace(D) - 1) / 2)`` with ``axis(D)`` the vector
    ``(D32 - D23, D13 - D31, D21 - D12)``, whose length is ``2 sin`` of the angle: the same
    angle, precise near 0 and 180. MAEV: the mean over the three columns ``j`` of the angle
    between ``R_true[:, j]`` and ``R_pred[:, j]``, ``atan2(|a x b|, a . b)``.
    """
    true_matrices, predicted_matrices = _matrices(true_deg), _matrices(predicted_deg)
    if len(true_matrices) != len(predicted_matrices):
        raise HeadposeError(
            f"rotation errors: {len(predicted_matrices)} predicted and {len(true_matrices)} "
            "true angle triples; expected as many of each"
        )
    difference = np.swapaxes(true_matrices, -1, -2) @ predicted_matrices
    trace = np.trace(difference, axis1=-2, axis2=-1)
    axis = np.stack(
        [
            difference[:, 2, 1] - difference[:, 1, 2],
            difference[:, 0, 2] - difference[:, 2, 0],
            difference[:, 1, 0] - difference[:, 0, 1],
        ],
        axis=-1,
    )
    geodesic = _angle_between((trace - 1.0) / 2.0, np.linalg.norm(axis, axis=-1) / 2.0)
    # columns j of both: (N, 3 components, 3 columns)
    dots = np.sum(true_matrices * predicted_matrices, axis=-2)  # (N, 3 columns)
    crosses = np.linalg.norm(np.cross(true_matrices, predicted_matrices, axis=-2), axis=-2)
    maev = _angle_between(dots, crosses).mean(axis=-1)
    return np.stack([geodesic, maev], axis=-1)


def rotation_summary(rotation_errors: np.ndarray) -> dict[str, dict]:
    """``{"geodesic": {"count", "mean"}, "maev": {"count", "mean"}}`` of (N, 2)
    :func:`rotation_errors_deg`, means rounded to 4 decimals (``None`` for an empty set): the
    form the metrics files report."""
    errors = np.asarray(rotation_errors, dtype=np.float64).reshape(-1, 2)
    count = len(errors)
    return {
        key: {"count": count, "mean": round(float(column.mean()), 4) if count else None}
        for key, column in zip(ROTATION_ERROR_KEYS, errors.T, strict=True)
    }


def error_sums(absolute_errors_deg: np.ndarray) -> np.ndarray:
    """``[sum of |yaw error|, sum of |pitch error|, sum of |roll error|, count]`` (float64)."""
    errors = np.asarray(absolute_errors_deg, dtype=np.float64).reshape(-1, 3)
    return np.append(errors.sum(axis=0), len(errors))


def mae_from_sums(sums: np.ndarray) -> dict:
    """``{"count", "yaw", "pitch", "roll", "mean"}`` from :func:`error_sums` (``None``s when
    empty); ``mean`` is the mean of the three angles' MAEs."""
    count = int(sums[3])
    if not count:
        return {"count": 0, **{name: None for name in ANGLE_NAMES}, "mean": None}
    per_angle = [float(total) / count for total in sums[:3]]
    return {
        "count": count,
        **dict(zip(ANGLE_NAMES, per_angle, strict=True)),
        "mean": float(np.mean(per_angle)),
    }


def mae_summary(absolute_errors_deg: np.ndarray) -> dict:
    """MAE per angle and their mean, rounded to 4 decimals (``None`` for an empty set), plus
    the sample count: the form the metrics files report."""
    summary = mae_from_sums(error_sums(absolute_errors_deg))
    return {
        key: value if value is None or key == "count" else round(value, 4)
        for key, value in summary.items()
    }


def near_frontal_mask(true_deg: np.ndarray) -> np.ndarray:
    """True for samples whose yaw, pitch and roll are all within (-30, 30) degrees."""
    return np.all(np.abs(true_deg) < NEAR_FRONTAL_LIMIT_DEG, axis=1)


def error_metrics(errors: PoseErrors, training_mean_deg: np.ndarray | None) -> dict:
    """The accuracy report: overall, near-frontal / rest, and the training-mean baseline; the
    MAEs (``mae``, ``mae_within_30`` ...) first, then the rotation errors under the same names
    with ``geodesic`` and ``maev`` for ``mae`` (``geodesic``, ``maev_within_30`` ...)."""
    absolute, rotation = errors.absolute_deg, errors.rotation_deg
    frontal = near_frontal_mask(errors.true_deg)
    subsets = {
        "": slice(None),
        f"_within_{NEAR_FRONTAL_LIMIT_DEG}": frontal,
        f"_beyond_{NEAR_FRONTAL_LIMIT_DEG}": ~frontal,
    }
    metrics = {f"mae{suffix}": mae_summary(absolute[rows]) for suffix, rows in subsets.items()}
    baseline_deg = None
    if training_mean_deg is not None:
        baseline_deg = np.broadcast_to(
            np.asarray(training_mean_deg, dtype=np.float64).reshape(1, 3), errors.true_deg.shape
        )
        metrics["baseline_training_mean_mae"] = mae_summary(np.abs(errors.true_deg - baseline_deg))
    for suffix, rows in subsets.items():
        for key, summary in rotation_summary(rotation[rows]).items():
            metrics[f"{key}{suffix}"] = summary
    if baseline_deg is not None:
        baseline = rotation_summary(rotation_errors_deg(baseline_deg, errors.true_deg))
        for key, summary in baseline.items():
            metrics[f"baseline_training_mean_{key}"] = summary
    return metrics
