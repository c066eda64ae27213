"""Angle distributions of the datasets: percentile tables and the data behind the histograms.

For the training set, 300W_AUG and the test set this reports yaw/pitch/roll percentiles
(5, 25, 50, 75, 95), min, max, mean and count, for:

* ``all``: every sample with a valid annotation found by the scan, out-of-range ones included
  (from ``data/filelists/angles.tsv``, so no .mat file is read twice);
* ``used``: the samples in the lists (``train.txt``, ``data/300W_AUG/train.txt``, ``test.txt``);
  the rotated copies' angles come from ``data/300W_AUG/angles.tsv``.

Percentiles use numpy's default linear interpolation. With it, ``all`` of the real AFLW2000
(all 2000 images, outliers down to -970 degrees included) reproduces the published table
(yaw -68.1/68.4, pitch -31.0/26.3, roll -33.5/33.7); the 1969 in-range images give narrower
values (yaw -65.9/67.5).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from headpose.datasets.filelists import read_angles_table
from headpose.errors import HeadposeError
from headpose.geometry import ANGLE_NAMES
from headpose.io.lists import read_list

PERCENTILES = (5, 25, 50, 75, 95)


def percentile_summary(values: np.ndarray, names: tuple[str, ...], digits: int = 3) -> dict:
    """Statistics of the columns of an (N, len(names)) array, as a nested dict of numbers:
    ``{"count": N, name: {"p5", ..., "p95", "min", "max", "mean"}}``."""
    table = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
    summary: dict = {"count": len(table)}
    if not len(table):
        return summary
    percentiles = np.percentile(table, PERCENTILES, axis=0)
    for column, name in enumerate(names):
        stats = {f"p{p}": percentiles[row, column] for row, p in enumerate(PERCENTILES)}
        stats.update(
            min=table[:, column].min(), max=table[:, column].max(), mean=table[:, column].mean()
        )
        summary[name] = {key: round(float(value), digits) for key, value in stats.items()}
    return summary


def angle_summary(angles_deg: np.ndarray) -> dict:
    """Statistics of an (N, 3) array of (yaw, pitch, roll) degrees, as a nested dict of numbers."""
    return percentile_summary(angles_deg, ANGLE_NAMES)


def _angles_of(samples: list[str], table: dict[str, np.ndarray], source: Path) -> np.ndarray:
    """Angles of listed samples, looked up in the angles tables."""
    missing = [sample for sample in samples if sample not in table]
    if missing:
        raise HeadposeError(
            f"{source} lists {missing[0]} (and {len(missing) - 1} more) that no angles.tsv "
            "describes; rerun `dvc repro augment`"
        )
    return np.array([table[sample] for sample in samples]).reshape(-1, 3)


def dataset_angles(
    filelists_folder: str | os.PathLike, augmented_folder: str | os.PathLike
) -> dict[str, dict[str, np.ndarray]]:
    """{dataset: {"all"|"used": (N, 3) angles}} for "train", "300W_AUG" and "test"."""
    lists, augmented = Path(filelists_folder), Path(augmented_folder)
    rows = read_angles_table(lists / "angles.tsv") + read_angles_table(augmented / "angles.tsv")
    by_sample = {sample: angles for sample, _, angles in rows}

    def scanned(dataset: str) -> np.ndarray:
        return np.array([angles for _, name, angles in rows if name == dataset]).reshape(-1, 3)

    def listed(path: Path) -> np.ndarray:
        return _angles_of(read_list(path), by_sample, path)

    return {
        "train": {"all": scanned("train"), "used": listed(lists / "train.txt")},
        "300W_AUG": {"used": listed(augmented / "train.txt")},
        "test": {"all": scanned("test"), "used": listed(lists / "test.txt")},
    }


def distributions(angles: dict[str, dict[str, np.ndarray]]) -> dict:
    """The ``metrics/distributions.json`` content: {dataset: {subset: summary}}."""
    return {
        dataset: {subset: angle_summary(values) for subset, values in subsets.items()}
        for dataset, subsets in angles.items()
    }
