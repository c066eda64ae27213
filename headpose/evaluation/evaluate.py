"""Evaluation: a checkpoint's angle errors on a test set, its size and speed, and the report.

The test images get the same evaluation crop and normalisation as validation
(:func:`headpose.data.pipeline.evaluation_dataset`: k = 0.2, eval margins, ImageNet
normalisation). The
report (:func:`evaluate`) holds the mean absolute error (MAE) of yaw, pitch, roll and their mean
on all samples, on the samples whose three |angles| are all below 30 degrees and on the rest;
the MAE of always predicting the training mean (the trivial baseline); parameter count,
checkpoint size, and inference time per image (batch 1, median after warm-up) and throughput at
batch 32 on the device used.

**The 1969 guard.** The published AFLW2000 numbers are over the 1969 images whose angles all lie
within +-99 degrees. A test list is recognised as the real AFLW2000-3D when all its samples lie in
one folder whose ``.jpg`` + ``.mat`` pairs are exactly the 2000 of the real set (the SHA-256 of
their sorted names, :data:`AFLW2000_NAMES_SHA256`); then any count but 1969 is refused, so no
number is reported under another protocol by mistake. A partial copy of the set is not recognised.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from headpose.data.pipeline import evaluation_dataset
from headpose.datasets.analyze import dataset_angles
from headpose.datasets.filelists import scan_dataset
from headpose.deploy.runtime import AngleFunction, AnglesModel, torch_angle_function
from headpose.errors import HeadposeError
from headpose.io.files import write_text
from headpose.io.formats import angles_within, read_list
from headpose.models.bins import Bins
from headpose.models.network import HeadPoseNet, count_parameters, load_checkpoint, pick_device

ANGLE_NAMES = ("yaw", "pitch", "roll")
NEAR_FRONTAL_LIMIT_DEG = 30  # the "|angles| < 30" subset
AFLW2000_PROTOCOL_COUNT = 1969
AFLW2000_NAMES_SHA256 = "acb1af9f109532c8cbb1c8a5a8e402c7acaf11402375c186dd343bf922704d70"
EVAL_BATCH_SIZE = 64
THROUGHPUT_BATCH_SIZE = 32
TIMED_RUNS = 20
WARMUP_RUNS = 3
MIN_IMAGE_SIZE = 32  # the smallest input every backbone accepts


@dataclass
class PoseErrors:
    """True and predicted (yaw, pitch, roll) degrees of each evaluated sample."""

    stems: list[str]
    true_deg: np.ndarray  # (N, 3)
    predicted_deg: np.ndarray  # (N, 3)

    @property
    def absolute_deg(self) -> np.ndarray:
        return np.abs(self.predicted_deg - self.true_deg)


# --- Metrics ------------------------------------------------------------------------------------


def mae_summary(absolute_errors_deg: np.ndarray) -> dict:
    """MAE per angle and their mean (``None`` for an empty set), plus the sample count."""
    errors = np.asarray(absolute_errors_deg, dtype=np.float64).reshape(-1, 3)
    summary: dict = {"count": len(errors)}
    per_angle = errors.mean(axis=0) if len(errors) else [None] * 3
    for name, value in zip(ANGLE_NAMES, per_angle, strict=True):
        summary[name] = None if value is None else round(float(value), 4)
    summary["mean"] = round(float(errors.mean()), 4) if len(errors) else None
    return summary


def near_frontal_mask(true_deg: np.ndarray) -> np.ndarray:
    """True for samples whose yaw, pitch and roll are all within (-30, 30) degrees."""
    return np.all(np.abs(true_deg) < NEAR_FRONTAL_LIMIT_DEG, axis=1)


def error_metrics(errors: PoseErrors, training_mean_deg: np.ndarray | None) -> dict:
    """The accuracy part of the report: overall, near-frontal / rest, and the baseline."""
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


def training_mean_deg(
    filelists_folder: str | os.PathLike, augmented_folder: str | os.PathLike
) -> np.ndarray:
    """Mean (yaw, pitch, roll) of the training list the model learned from (300W_AUG's)."""
    return dataset_angles(filelists_folder, augmented_folder)["300W_AUG"]["used"].mean(axis=0)


# --- The 1969 guard -----------------------------------------------------------------------------


def is_real_aflw2000(stems: list[str]) -> bool:
    """Whether the samples lie in one folder holding exactly the real AFLW2000-3D pairs."""
    folders = {Path(stem).parent for stem in stems}
    if len(folders) != 1:
        return False
    folder = folders.pop()
    names = sorted(path.stem for path in folder.glob("*.jpg") if path.with_suffix(".mat").is_file())
    digest = hashlib.sha256("".join(f"{name}\n" for name in names).encode()).hexdigest()
    return digest == AFLW2000_NAMES_SHA256


def check_protocol(stems: list[str], source: str) -> bool:
    """Refuse a real-AFLW2000 test list without the 1969 images; return whether it is real."""
    real = is_real_aflw2000(stems)
    if real and len(stems) != AFLW2000_PROTOCOL_COUNT:
        raise HeadposeError(
            f"{source} holds {len(stems)} samples of the real AFLW2000-3D, but the standard "
            f"protocol (drop any |angle| > 99 deg) keeps {AFLW2000_PROTOCOL_COUNT}: refusing to "
            "report a number that would not compare with published results; check max_angle "
            "and the skipped samples"
        )
    return real


# --- Test samples -------------------------------------------------------------------------------


def evaluation_stems(data: str | os.PathLike, max_angle_deg: float = 99) -> list[str]:
    """Samples to evaluate: a sample list file, or an AFLW2000-layout folder scanned and
    filtered as the filelists stage does (valid pairs with every |angle| <= ``max_angle_deg``)."""
    if Path(data).is_dir():
        scan = scan_dataset(data, "test", recursive=False)
        stems = [
            check.path
            for check in scan.checks
            if check.problem is None and angles_within(check.angles_deg, max_angle_deg)
        ]
        if not stems:
            raise HeadposeError(f"{data}: no valid sample has all |angles| <= {max_angle_deg:g}")
        return stems
    return read_list(data)


# --- Inference ----------------------------------------------------------------------------------


def predict_with(
    predict_angles: AngleFunction, stems: list[str], image_size: int, workers: int = 0
) -> PoseErrors:
    """Predict (yaw, pitch, roll) for every sample in batches with any runtime (a PyTorch model,
    an ONNX Runtime session, ...) wrapped as an :data:`~headpose.deploy.runtime.AngleFunction`."""
    dataset = evaluation_dataset(stems, image_size, workers)
    loader = DataLoader(dataset, batch_size=EVAL_BATCH_SIZE, shuffle=False)
    predictions, truths = [], []
    for images, angles_deg in tqdm(loader, desc="evaluate", unit="batch"):
        predictions.append(np.asarray(predict_angles(images), dtype=np.float64))
        truths.append(angles_deg.numpy().astype(np.float64))
    return PoseErrors(dataset.crops.stems, np.concatenate(truths), np.concatenate(predictions))


def predict(
    model: HeadPoseNet,
    stems: list[str],
    image_size: int,
    bins: Bins,
    expectation: str,
    device: torch.device,
    workers: int = 0,
) -> PoseErrors:
    """Predict (yaw, pitch, roll) for every sample with a PyTorch model (on ``device``)."""
    angles_model = AnglesModel(model, bins.width_deg, expectation).to(device).eval()
    return predict_with(torch_angle_function(angles_model), stems, image_size, workers)


def _median_seconds(
    model: Callable[[torch.Tensor], object], images: torch.Tensor, runs: int
) -> float:
    def synchronize() -> None:
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)

    with torch.inference_mode():
        for _ in range(WARMUP_RUNS):
            model(images)
        synchronize()
        durations = []
        for _ in range(runs):
            start = time.perf_counter()
            model(images)
            synchronize()
            durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def measure_speed(
    model: Callable[[torch.Tensor], object],
    image_size: int,
    device: torch.device,
    timed_runs: int = TIMED_RUNS,
) -> dict:
    """Median latency of one image (ms) and throughput at batch 32 (images/s) on ``device``.

    ``model`` is anything called on an image batch: a module, or an ONNX Runtime
    :data:`~headpose.deploy.runtime.AngleFunction` (then ``device`` is the CPU)."""
    single = torch.randn(1, 3, image_size, image_size, device=device)
    batch = torch.randn(THROUGHPUT_BATCH_SIZE, 3, image_size, image_size, device=device)
    latency_s = _median_seconds(model, single, timed_runs)
    batch_s = _median_seconds(model, batch, max(timed_runs // 4, 1))
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "latency_ms_batch1": round(latency_s * 1000, 3),
        f"throughput_images_per_s_batch{THROUGHPUT_BATCH_SIZE}": round(
            THROUGHPUT_BATCH_SIZE / batch_s, 1
        ),
    }


# --- The whole evaluation -----------------------------------------------------------------------


@dataclass
class Evaluation:
    """Everything one evaluation produces."""

    errors: PoseErrors
    metrics: dict


def evaluate(
    checkpoint: str | os.PathLike,
    stems: list[str],
    source: str,
    *,
    expectation: str | None = None,
    bin_width: int | None = None,
    image_size: int | None = None,
    training_mean: np.ndarray | None = None,
    workers: int = 0,
    device: torch.device | None = None,
) -> Evaluation:
    """Evaluate ``checkpoint`` on ``stems`` (named ``source`` in messages).

    ``expectation`` and ``image_size`` override the checkpoint's meta; ``bin_width`` must match
    it. The real AFLW2000 must come as its 1969-image protocol (:func:`check_protocol`).
    """
    real_aflw2000 = check_protocol(stems, source)
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise HeadposeError(f"image size {image_size} is too small: at least {MIN_IMAGE_SIZE} px")
    device = device or pick_device()
    expected = None if bin_width is None else {"bin_width": bin_width}
    model, meta = load_checkpoint(checkpoint, expected=expected, device=device)
    expectation = expectation or meta["expectation"]
    image_size = image_size or meta["image_size"]
    bins = Bins(meta["bin_width"])
    errors = predict(model, stems, image_size, bins, expectation, device, workers)
    metrics = {
        "count": len(stems),
        "real_aflw2000": real_aflw2000,
        **error_metrics(errors, training_mean),
        "model": {
            "arch": meta["arch"],
            "num_bins": meta["num_bins"],
            "bin_width": meta["bin_width"],
            "expectation": expectation,
            "image_size": image_size,
            "parameters": count_parameters(model),
            "checkpoint_mb": round(os.path.getsize(checkpoint) / 2**20, 2),
        },
        "speed": measure_speed(model, image_size, device),
    }
    return Evaluation(errors, metrics)


# --- Outputs ------------------------------------------------------------------------------------

PER_IMAGE_COLUMNS = (
    "stem",
    *(f"true_{name}_deg" for name in ANGLE_NAMES),
    *(f"predicted_{name}_deg" for name in ANGLE_NAMES),
    *(f"abs_error_{name}_deg" for name in ANGLE_NAMES),
)


def write_per_image_csv(path: str | os.PathLike, errors: PoseErrors) -> None:
    """One row per sample: stem, true, predicted and absolute error of each angle (degrees)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PER_IMAGE_COLUMNS)
    values = np.concatenate([errors.true_deg, errors.predicted_deg, errors.absolute_deg], axis=1)
    for stem, row in zip(errors.stems, values, strict=True):
        writer.writerow([stem, *(f"{value:.4f}" for value in row)])
    write_text(path, text.getvalue())


def _cells(summary: dict) -> str:
    numbers = [summary[name] for name in (*ANGLE_NAMES, "mean")]
    shown = "".join(f"{'-':>8}" if v is None else f"{v:8.2f}" for v in numbers)
    return f"{shown}{summary['count']:7d}"


def format_report(metrics: dict, checkpoint: str | os.PathLike, source: str) -> str:
    """The printed table: MAE rows, then model size and speed."""
    model, speed = metrics["model"], metrics["speed"]
    protocol = " (real AFLW2000-3D, 1969-image protocol)" if metrics["real_aflw2000"] else ""
    rows = [
        f"{checkpoint}: {model['arch']}, {model['num_bins']} bins of {model['bin_width']} deg, "
        f"{model['expectation']} expectation, {model['image_size']} px",
        f"test set {source}: {metrics['count']} samples{protocol}",
        f"{'MAE (degrees)':<24}{'yaw':>8}{'pitch':>8}{'roll':>8}{'mean':>8}{'n':>7}",
        f"{'all':<24}{_cells(metrics['mae'])}",
        f"{'|angles| < 30':<24}{_cells(metrics[f'mae_within_{NEAR_FRONTAL_LIMIT_DEG}'])}",
        f"{'rest':<24}{_cells(metrics[f'mae_beyond_{NEAR_FRONTAL_LIMIT_DEG}'])}",
    ]
    if "baseline_training_mean_mae" in metrics:
        baseline = metrics["baseline_training_mean_mae"]
        rows.append(f"{'baseline: training mean':<24}{_cells(baseline)}")
    throughput = speed[f"throughput_images_per_s_batch{THROUGHPUT_BATCH_SIZE}"]
    rows.append(
        f"{model['parameters'] / 1e6:.2f} M parameters, checkpoint {model['checkpoint_mb']} MB; "
        f"{speed['device']} ({speed['cpu_threads']} CPU threads): "
        f"{speed['latency_ms_batch1']:.2f} ms/image at batch 1 (median), "
        f"{throughput:.0f} images/s at batch {THROUGHPUT_BATCH_SIZE}"
    )
    return "\n".join(rows)


# --- Command line -------------------------------------------------------------------------------


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    """``headpose evaluate CHECKPOINT --data FOLDER_OR_LIST [options]``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="MAE of a checkpoint (ours or an original HopeNet .pkl) on an AFLW2000-format set",
        description="Evaluate a checkpoint on an AFLW2000-format folder (scanned and filtered "
        "by --max-angle as the filelists stage does) or a sample list, and print the table of "
        "the evaluate stage. Defaults for the options come from the checkpoint; an original "
        "HopeNet snapshot is evaluated as published (bin width 3, lower_edges, 224 px).",
    )
    parser.add_argument("checkpoint", help="a models/*.pt checkpoint or a HopeNet .pkl snapshot")
    parser.add_argument("--data", required=True, help="AFLW2000-format folder or sample list")
    parser.add_argument("--expectation", choices=("centers", "lower_edges"))
    parser.add_argument("--bin-width", type=int, help="must match the checkpoint's bins")
    parser.add_argument("--image-size", type=int, help="input size in pixels")
    parser.add_argument("--max-angle", type=float, default=99, help="folder filter (degrees)")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also show the training-mean baseline, from data/filelists and data/300W_AUG",
    )
    parser.add_argument("--workers", type=int, default=0, help="decode processes (0: all cores)")
    parser.set_defaults(run=_run_evaluate_command)


def _run_evaluate_command(args: argparse.Namespace) -> None:
    stems = evaluation_stems(args.data, args.max_angle)
    training_mean = training_mean_deg("data/filelists", "data/300W_AUG") if args.baseline else None
    result = evaluate(
        args.checkpoint,
        stems,
        args.data,
        expectation=args.expectation,
        bin_width=args.bin_width,
        image_size=args.image_size,
        training_mean=training_mean,
        workers=args.workers,
    )
    print(format_report(result.metrics, args.checkpoint, args.data))
