"""Plots: the project's figures, written as PNG files (matplotlib, no display needed).

Each function takes plain arrays, draws one figure with matplotlib's object-oriented API (no
pyplot state) and writes it atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from headpose.io.files import atomic_path

HISTOGRAM_BIN_DEG = 3


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically; return the path."""
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=dpi)
    return Path(path)


def plot_angle_histograms(
    angles_by_dataset: dict[str, np.ndarray], folder: str | os.PathLike
) -> list[Path]:
    """Overlaid histograms per angle: ``folder/yaw.png``, ``pitch.png``, ``roll.png``.

    ``angles_by_dataset`` maps a label to an (N, 3) array of (yaw, pitch, roll) degrees. Each
    dataset is normalised to a density so sets of different sizes compare.
    """
    paths = []
    for column, angle_name in enumerate(("yaw", "pitch", "roll")):
        values = [
            np.asarray(a, dtype=np.float64).reshape(-1, 3)[:, column]
            for a in angles_by_dataset.values()
        ]
        present = np.concatenate([v for v in values if v.size] or [np.zeros(1)])
        low = HISTOGRAM_BIN_DEG * math.floor(present.min() / HISTOGRAM_BIN_DEG)
        high = HISTOGRAM_BIN_DEG * (math.ceil(present.max() / HISTOGRAM_BIN_DEG) + 1)
        bins = np.arange(low, high + HISTOGRAM_BIN_DEG, HISTOGRAM_BIN_DEG)
        figure = Figure(figsize=(7, 4), layout="constrained")
        axes = figure.add_subplot()
        for label, column_values in zip(angles_by_dataset, values, strict=True):
            if column_values.size:
                axes.hist(
                    column_values,
                    bins=bins,
                    density=True,
                    histtype="step",
                    linewidth=1.6,
                    label=f"{label} (n={column_values.size})",
                )
        axes.set_xlabel(f"{angle_name} (degrees)")
        axes.set_ylabel("density")
        axes.set_title(f"{angle_name} distribution")
        axes.legend()
        paths.append(save_figure(figure, Path(folder) / f"{angle_name}.png"))
    return paths


def plot_errors_vs_angle(
    true_deg: np.ndarray, absolute_error_deg: np.ndarray, folder: str | os.PathLike
) -> list[Path]:
    """Scatter of absolute error against true angle: ``folder/{yaw,pitch,roll}_error.png``.

    Both arrays are (N, 3) of (yaw, pitch, roll) degrees; each title gives the angle's MAE.
    """
    true_deg = np.asarray(true_deg, dtype=np.float64).reshape(-1, 3)
    absolute_error_deg = np.asarray(absolute_error_deg, dtype=np.float64).reshape(-1, 3)
    paths = []
    for column, angle_name in enumerate(("yaw", "pitch", "roll")):
        errors = absolute_error_deg[:, column]
        figure = Figure(figsize=(7, 4), layout="constrained")
        axes = figure.add_subplot()
        axes.scatter(true_deg[:, column], errors, s=6, alpha=0.5, linewidths=0)
        axes.set_xlabel(f"true {angle_name} (degrees)")
        axes.set_ylabel(f"|{angle_name} error| (degrees)")
        mae = f"MAE {errors.mean():.2f} deg" if errors.size else "no samples"
        axes.set_title(f"{angle_name}: absolute error vs true angle ({mae}, n={errors.size})")
        axes.grid(alpha=0.3)
        paths.append(save_figure(figure, Path(folder) / f"{angle_name}_error.png"))
    return paths


def plot_contact_sheet(
    images: list[np.ndarray],
    titles: list[str],
    landmarks_xy: list[np.ndarray | None],
    path: str | os.PathLike,
    columns: int = 6,
) -> Path:
    """A grid of RGB images with a title each; landmarks (N, 2, 1-based) drawn where given."""
    rows = max(1, math.ceil(len(images) / columns))
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows), layout="constrained")
    for index, (image, title, points) in enumerate(zip(images, titles, landmarks_xy, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(image)
        if points is not None:
            axes.scatter(points[:, 0] - 1, points[:, 1] - 1, s=3, c="lime", linewidths=0)
        axes.set_title(title, fontsize=7)
        axes.set_axis_off()
    return save_figure(figure, path, dpi=90)


def plot_framing_sweep(
    scales: np.ndarray,
    mae_by_curve: dict[str, np.ndarray],
    published_scale: float,
    path: str | os.PathLike,
    title: str = "MAE against framing",
) -> Path:
    """Mean MAE against framing scale, one line per entry of ``mae_by_curve`` (a label to one
    value per scale), with vertical lines at 1.0 (the visible crop, the sweep's reference) and
    at ``published_scale`` (where the published crop frames the same faces)."""
    scales = np.asarray(scales, dtype=np.float64)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for label, values in mae_by_curve.items():
        axes.plot(scales, np.asarray(values, dtype=np.float64), marker="o", label=label)
    for scale, label, style in (
        (1.0, "visible crop", "-"),
        (published_scale, f"published crop ({published_scale:.2f}x)", "--"),
    ):
        axes.axvline(scale, color="0.4", linestyle=style, linewidth=1.2)
        # x in data, y in axes fraction: the label runs down beside its line, inside the axes
        axes.text(
            scale,
            0.97,
            f" {label}",
            transform=axes.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="top",
            fontsize=8,
            color="0.3",
        )
    axes.set_xlabel("crop scale (x the visible crop's side; larger: the face looks smaller)")
    axes.set_ylabel("MAE, mean of yaw, pitch, roll (degrees)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


FRAMING_LABELS = {
    "scale": "face side / crop side",
    "offset_x": "face centre x offset (crop sides, + right)",
    "offset_y": "face centre y offset (crop sides, + down)",
}


def plot_framing_histograms(
    framing_by_dataset: dict[str, dict[str, np.ndarray]], path: str | os.PathLike
) -> Path:
    """One figure of three overlaid density histograms (face scale, x and y offset in the network
    input) per dataset and subset: ``framing_by_dataset`` maps a dataset to {subset: (N, 3)}."""
    figure = Figure(figsize=(13, 4), layout="constrained")
    curves = [
        (f"{dataset} {subset}" if len(subsets) > 1 else dataset, np.asarray(values).reshape(-1, 3))
        for dataset, subsets in framing_by_dataset.items()
        for subset, values in subsets.items()
    ]
    for column, (name, label) in enumerate(FRAMING_LABELS.items()):
        axes = figure.add_subplot(1, 3, column + 1)
        present = np.concatenate([values[:, column] for _, values in curves if len(values)])
        bins = np.linspace(present.min(), present.max(), 41) if present.size else 10
        for curve_label, values in curves:
            if len(values):
                axes.hist(values[:, column], bins=bins, density=True, histtype="step",
                          linewidth=1.6, label=f"{curve_label} (n={len(values)})")  # fmt: skip
        axes.set_xlabel(label)
        axes.set_ylabel("density")
        axes.set_title(f"framing: {name}")
        if column == 0:
            axes.legend(fontsize="small")
    return save_figure(figure, path)
