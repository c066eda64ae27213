"""Evaluation: the one inference path, the evaluation of a checkpoint, and its report.

Every score of a model goes through :func:`headpose.inference.batches.predict_angles` (a
runtime wrapped as an :data:`~headpose.inference.runtime.AngleFunction`, over batches of the
evaluation crops of :func:`headpose.crops.pipeline.evaluation_dataset` under a crop protocol,
ImageNet normalisation) and the metrics of :mod:`headpose.evaluation.metrics`: validation in
training,
the evaluate stage, the export stage's parity and int8 costs, and the benchmark.

:func:`evaluate` scores a model on a test list: a checkpoint (ours or an original HopeNet
snapshot) or an exported ``.onnx`` file, opened by its caller through the one opener
(:func:`headpose.inference.loading.open_model`; other options of a checkpoint's head, such as
the bins' expectation mode, come as a head, never one by one). It reports the mean absolute
error (MAE) of yaw, pitch, roll and their mean, and the mean geodesic error and MAEV
(:func:`headpose.evaluation.metrics.rotation_errors_deg`), on all samples, on the samples whose
three |angles| are all below 30 degrees and on the rest; the same errors of always predicting the
training-set mean angles stored in the checkpoint (the trivial baseline); parameter count (of a
checkpoint) and file size. Faces are cropped by the published ``hopenet`` protocol unless told
otherwise (:mod:`headpose.crops.protocols`); ``other_protocols`` scores the same model under other
crops beside it, so a report shows how much the crop alone moves the model. The real AFLW2000
must come as its 1969-image protocol (:mod:`headpose.evaluation.test_sets`). Speed is measured apart
(:func:`headpose.inference.timing.measure_speed`), so the accuracy metrics of one model and test
list are the same on every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from headpose.crops.pipeline import PoseDataset, evaluation_dataset
from headpose.crops.protocols import DEFAULT_PROTOCOL, PROTOCOLS, CropProtocol, choose_protocol
from headpose.crops.protocols.stored_box import STORED_BOX_NAME
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError
from headpose.evaluation.metrics import (
    NEAR_FRONTAL_LIMIT_DEG,
    ROTATION_ERROR_COLUMNS,
    ROTATION_ERROR_KEYS,
    PoseErrors,
    error_metrics,
)
from headpose.evaluation.test_sets import check_published_test_set
from headpose.geometry import ANGLE_NAMES
from headpose.inference import timing
from headpose.inference.batches import predict_angles
from headpose.inference.loading import LoadedModel
from headpose.inference.runtime import AngleFunction
from headpose.inference.timing import measure_speed
from headpose.io.files import file_size_mb, write_csv
from headpose.models.heads import head_from_meta
from headpose.models.network import count_parameters
from headpose.models.registry import Normalization

EVAL_BATCH_SIZE = 64


# --- The inference path -------------------------------------------------------------------------


def predict_dataset(
    predict: AngleFunction,
    dataset: PoseDataset,
    batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | None = None,
    *,
    normalization: Normalization,
) -> PoseErrors:
    """The errors of ``predict`` on every sample of an evaluation dataset (inputs normalised by
    the model's ``normalization`` on ``device``, default the CPU)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    predicted, true = predict_angles(predict, loader, normalization, device=device)
    return PoseErrors(dataset.crops.entries, true, predicted)


def predict_samples(
    predict: AngleFunction,
    samples: list[Sample],
    image_size: int,
    crop_protocol: CropProtocol,
    workers: int = 0,
    device: torch.device | None = None,
    *,
    normalization: Normalization,
) -> PoseErrors:
    """Read ``samples`` as evaluation crops of ``crop_protocol`` at ``image_size`` (crop store)
    and predict them all (inputs normalised by the model's ``normalization``)."""
    dataset = evaluation_dataset(samples, image_size, crop_protocol, workers)
    return predict_dataset(predict, dataset, device=device, normalization=normalization)


# --- The whole evaluation -----------------------------------------------------------------------


@dataclass
class Evaluation:
    """Everything one evaluation produces, and the model it scored (for timing it)."""

    errors: PoseErrors
    metrics: dict
    loaded: LoadedModel


def evaluate(
    loaded: LoadedModel,
    samples: list[Sample],
    source: str,
    *,
    baseline: bool = False,
    training_mean: np.ndarray | None = None,
    crop_protocol: CropProtocol | None = None,
    other_protocols: tuple[CropProtocol, ...] = (),
    workers: int = 0,
) -> Evaluation:
    """Evaluate ``loaded`` on ``samples`` (named ``source`` in messages), faces cropped by
    ``crop_protocol``; the MAEs under each of ``other_protocols`` go beside them.

    ``loaded`` is a model file opened by the one opener,
    :func:`headpose.inference.loading.open_model`: a checkpoint (ours or an original HopeNet
    snapshot) through its angles model (fused when the backbone can be, as deployed; its outputs
    possibly read with other options of its head,
    :meth:`~headpose.inference.loading.LoadedModel.with_head`), or an exported ``.onnx`` file in
    ONNX Runtime. ``baseline`` adds the MAE of the training-mean angles the checkpoint stores (or
    of ``training_mean``, when given). The real AFLW2000 must come as its 1969-image protocol.
    """
    real_aflw2000 = check_published_test_set(samples, source)
    protocol = choose_protocol(crop_protocol)  # a test set's crop: by default the published one
    others = tuple(other_protocols)
    stored_box = bool(samples) and all(sample.stores_crop_box for sample in samples)
    if stored_box:
        # the dataset's own boxes are the crops (BIWI, .npz): no crop protocol applies
        protocol, others = DEFAULT_PROTOCOL, ()
    meta, description, device = loaded.meta or {}, loaded.description, loaded.device
    image_size = description.image_size
    if training_mean is None and baseline:
        if "training_mean_deg" not in meta:
            raise HeadposeError(
                f"{loaded.path} holds no training-mean angles for the baseline (a HopeNet "
                "snapshot, an .onnx model, or trained before checkpoints stored them)"
            )
        training_mean = np.asarray(meta["training_mean_deg"], dtype=np.float64)
    function = loaded.predict
    normalization = description.normalization
    errors = predict_samples(
        function, samples, image_size, protocol, workers, device, normalization=normalization
    )
    metrics = {
        "count": len(samples),
        "real_aflw2000": real_aflw2000,
        "crop_protocol": STORED_BOX_NAME if stored_box else protocol.name,
        **error_metrics(errors, training_mean),
    }
    if others:
        metrics["other_protocols"] = {
            other.name: error_metrics(
                predict_samples(
                    function,
                    samples,
                    image_size,
                    other,
                    workers,
                    device,
                    normalization=normalization,
                ),
                None,
            )
            for other in others
        }
    metrics["model"] = {
        **_model_metrics(loaded),
        "image_size": image_size,
        "parameters": None if loaded.model is None else count_parameters(loaded.model.network),
        "checkpoint_mb": file_size_mb(loaded.path),
        "trained_crop_protocol": description.crop_protocol.name,
    }
    return Evaluation(errors, metrics, loaded)


def _model_metrics(loaded: LoadedModel) -> dict:
    """Arch and head of a loaded model (and whether a checkpoint's backbone is fused, or an
    ``.onnx`` file's precision)."""
    if loaded.model is None:
        arch, head = loaded.description.arch, loaded.description.head or {}
        return {"arch": arch, **head, "precision": loaded.description.precision}
    model = loaded.model
    return {"arch": loaded.meta["arch"], **model.head.meta(), "fused": model.network.fused}


def evaluation_timing(result: Evaluation) -> dict:
    """Latency and throughput of the evaluated model on its device (not a metric: it varies)."""
    loaded = result.loaded
    timed = loaded.predict if loaded.model is None else loaded.model
    return measure_speed(timed, result.metrics["model"]["image_size"], loaded.device)


# --- Outputs ------------------------------------------------------------------------------------

PER_IMAGE_COLUMNS = (
    "stem",
    *(f"true_{name}_deg" for name in ANGLE_NAMES),
    *(f"predicted_{name}_deg" for name in ANGLE_NAMES),
    *(f"abs_error_{name}_deg" for name in ANGLE_NAMES),
    *ROTATION_ERROR_COLUMNS,
)


def write_per_image_csv(path: str | os.PathLike, errors: PoseErrors) -> None:
    """One row per sample: stem, true, predicted and absolute error of each angle, then the
    sample's geodesic error and MAEV (degrees)."""
    values = np.concatenate(
        [errors.true_deg, errors.predicted_deg, errors.absolute_deg, errors.rotation_deg], axis=1
    )
    rows = (
        [stem, *(f"{value:.4f}" for value in row)]
        for stem, row in zip(errors.stems, values, strict=True)
    )
    write_csv(path, PER_IMAGE_COLUMNS, rows)


def _mae_rows(metrics: dict, label: str = "") -> list[str]:
    """The rows of one protocol's errors: all, near-frontal, rest."""
    subsets = (
        ("all", ""),
        ("|angles| < 30", f"_within_{NEAR_FRONTAL_LIMIT_DEG}"),
        ("rest", f"_beyond_{NEAR_FRONTAL_LIMIT_DEG}"),
    )
    return [f"{label + name:<24}{_cells(metrics, suffix)}" for name, suffix in subsets]


def _cells(metrics: dict, suffix: str = "", prefix: str = "") -> str:
    """The MAE cells (yaw, pitch, roll, mean), the geodesic and MAEV cells and the count of the
    metrics ``{prefix}mae{suffix}`` and ``{prefix}geodesic{suffix}`` ... (``-`` where missing:
    metrics written before the rotation errors existed)."""
    summary = metrics[f"{prefix}mae{suffix}"]
    numbers = [summary[name] for name in (*ANGLE_NAMES, "mean")]
    numbers += [
        metrics.get(f"{prefix}{key}{suffix}", {}).get("mean") for key in ROTATION_ERROR_KEYS
    ]
    shown = "".join(f"{'-':>8}" if v is None else f"{v:8.2f}" for v in numbers)
    return f"{shown}{summary['count']:7d}"


def format_report(
    metrics: dict,
    checkpoint: str | os.PathLike,
    source: str,
    speed: dict | None = None,
    skipped: int = 0,
) -> str:
    """The printed table: rows of MAE per angle and their mean, mean geodesic error (GE) and
    MAEV, then model size (and ``speed``, when measured); ``skipped`` samples of a scanned folder
    are counted in the header (and listed on stderr)."""
    model = metrics["model"]
    protocol = " (real AFLW2000-3D, 1969-image protocol)" if metrics["real_aflw2000"] else ""
    source_label = f"checkpoint {checkpoint}"
    head = head_from_meta(model, source_label).label() if "head" in model else "head unknown"
    arch = model["arch"] or "arch unknown"
    if "precision" in model:  # an .onnx file
        arch += f", {model['precision']} ONNX"
    elif model.get("fused"):
        arch += ", fused"
    crop = metrics["crop_protocol"]
    if crop == STORED_BOX_NAME:
        crop_row = "crop: each sample's stored box (the dataset's own protocol)"
    elif crop == DEFAULT_PROTOCOL.name:
        crop_row = f"crop protocol {crop} (published)"
    else:
        crop_row = f"crop protocol {crop} (not comparable to published tables)"
    rows = [
        f"{checkpoint}: {arch}, {head}, {model['image_size']} px, trained on the "
        f"{model['trained_crop_protocol']} crop",
        f"test set {source}: {metrics['count']} samples{protocol}"
        + (f" ({skipped} skipped, listed above with the reason)" if skipped else ""),
        f"{'MAE, GE, MAEV (degrees)':<24}{'yaw':>8}{'pitch':>8}{'roll':>8}{'mean':>8}"
        f"{'GE':>8}{'MAEV':>8}{'n':>7}",
        crop_row,
        *_mae_rows(metrics),
    ]
    if "baseline_training_mean_mae" in metrics:
        baseline = _cells(metrics, prefix="baseline_training_mean_")
        rows.append(f"{'baseline: training mean':<24}{baseline}")
    for other, other_metrics in metrics.get("other_protocols", {}).items():
        rows += [f"crop protocol {other}, same model", *_mae_rows(other_metrics)]
    if model["parameters"] is None:  # an .onnx file
        size = f"file {model['checkpoint_mb']} MB"
    else:
        millions = model["parameters"] / 1e6
        size = f"{millions:.2f} M parameters, checkpoint {model['checkpoint_mb']} MB"
    if speed is None:
        rows.append(size)
    else:
        batch = timing.THROUGHPUT_BATCH_SIZE
        throughput = speed[f"throughput_images_per_s_batch{batch}"]
        rows.append(
            f"{size}; {speed['device']} ({speed['cpu_threads']} CPU threads): "
            f"{speed['latency_ms_batch1']:.2f} ms/image at batch 1 (median), "
            f"{throughput:.0f} images/s at batch {batch}"
        )
    return "\n".join(rows)


def other_protocols(protocol: CropProtocol) -> tuple[CropProtocol, ...]:
    """Every registered crop protocol but ``protocol`` that is scored among others
    (:attr:`~headpose.crops.protocols.CropProtocol.among_others`)."""
    return tuple(other for other in PROTOCOLS.values() if other != protocol and other.among_others)
