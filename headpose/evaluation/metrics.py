"""Error metrics: mean absolute errors (MAE) of yaw, pitch and roll, overall and on subsets.

Every MAE of the project (validation during training, the evaluate stage, the export parity
run, the benchmark) is computed here from the absolute errors in degrees: per-angle sums and a
count (:func:`error_sums`, which multi-process validation adds up over the processes) turned
into means (:func:`mae_from_sums`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headpose.geometry import ANGLE_NAMES

NEAR_FRONTAL_LIMIT_DEG = 30  # the "|angles| < 30" subset
# The names of the MAEs of one set as validation records and the framing sweep reports them.
MAE_KEYS = (*(f"mae_{angle}" for angle in ANGLE_NAMES), "mae_mean")


@dataclass
class PoseErrors:
    """True and predicted (yaw, pitch, roll) degrees of each evaluated sample."""

    stems: list[str]
    true_deg: np.ndarray  # (N, 3)
    predicted_deg: np.ndarray  # (N, 3)

    @property
    def absolute_deg(self) -> np.ndarray:
        return absolute_errors_deg(self.predicted_deg, self.true_deg)


def absolute_errors_deg(predicted_deg: np.ndarray, true_deg: np.ndarray) -> np.ndarray:
    """|predicted - true| of each angle of each sample (float64 degrees)."""
    return np.abs(np.asarray(predicted_deg, np.float64) - np.asarray(true_deg, np.float64))


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
    """The accuracy report: overall, near-frontal / rest, and the training-mean baseline."""
    absolute = errors.absolute_deg
    frontal = near_frontal_mask(errors.true_deg)
    metrics = {
        "mae": mae_summary(absolute),
        f"mae_within_{NEAR_FRONTAL_LIMIT_DEG}": mae_summary(absolute[frontal]),
        f"mae_beyond_{NEAR_FRONTAL_LIMIT_DEG}": mae_summary(absolute[~frontal]),
    }
    if training_mean_deg is not None:
        baseline = np.abs(errors.true_deg - np.asarray(training_mean_deg).reshape(1, 3))
        metrics["baseline_training_mean_mae"] = mae_summary(baseline)
    return metrics
