"""Backbone benchmark: size, accuracy and speed of PyTorch fp32, ONNX Runtime fp32 and int8.

For each backbone, one run measures parameter count, file sizes, latency per image at batch 1
(median after warm-up) and throughput at batch 32 of three runtimes:

* ``torch_fp32``: the PyTorch model in eager mode (on the current device: CUDA if available);
* ``onnx_fp32``: its ONNX export (:func:`headpose.inference.onnx_export.export_onnx`) in ONNX
  Runtime, on the CPU;
* ``onnx_int8``: the static QDQ int8 quantisation of that export (:func:`quantize_onnx`), CPU.

Trained checkpoints are opened once each, by the one opener
(:func:`headpose.inference.loading.open_model`, :func:`checkpoint_rows`). With a test list, each
runtime's MAE is measured too, through the same evaluation code as the evaluate stage
(:func:`headpose.evaluation.evaluate.predict_samples`). A backbone without a checkpoint (any
registered arch or ``timm/<name>``) is built with untrained weights and the head of ``--head``
and labelled ``untrained`` (timing only; its int8 model is calibrated on random inputs unless a
calibration list is given). Either head runs inside the model, so all runtimes output degrees;
re-parameterisable backbones (RepVGG, MobileOne) are measured fused, as deployed. Rows are named
by arch, with the head added when it is not bins (``resnet18 (rotation_6d)``), so two heads on
one backbone compare side by side.

PyTorch and ONNX Runtime get the same number of threads (``threads``). Timings on a shared
machine vary between runs: compare the ratios within one run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from headpose.crops.protocols import CropProtocol, choose_protocol
from headpose.datasets.registry import Sample, read_samples
from headpose.deploy.export import build_runtimes, calibration_images
from headpose.evaluation.evaluate import predict_samples
from headpose.evaluation.metrics import mae_summary
from headpose.inference.loading import LoadedModel, open_model
from headpose.inference.metadata import ModelDescription
from headpose.inference.timing import measure_speed
from headpose.io.files import file_size_mb
from headpose.models.heads import DEFAULT_HEAD, default_head
from headpose.models.network import (
    AnglesModel,
    build_model,
    count_parameters,
    fused_for_inference,
    pick_device,
)
from headpose.models.registry import get_arch

DEFAULT_ARCHS = ("resnet18", "mobilenet_v2", "shufflenet_v2_x1_0")
LATENCY_KEY = "latency_ms_batch1"
THROUGHPUT_KEY = "throughput_images_per_s_batch32"


def row_name(arch: str, head: str) -> str:
    """A benchmark row's name: the arch, with the head when it is not bins."""
    return arch if head == DEFAULT_HEAD else f"{arch} ({head})"


def benchmark_backbone(
    arch: str,
    checkpoint: LoadedModel | None,
    image_size: int | None,
    work_dir: Path,
    *,
    head: str = DEFAULT_HEAD,
    test_samples: list[Sample] | None = None,
    calibration_samples: list[Sample] | None = None,
    timed_runs: int = 20,
    calibration_count: int = 128,
    crop_protocol: CropProtocol | None = None,
) -> dict:
    """Measure one backbone (a trained ``checkpoint`` opened in PyTorch by
    :func:`checkpoint_rows`, or ``arch`` untrained with ``head`` at ``image_size``) in the three
    runtimes; calibration and test crops follow ``crop_protocol``. The ONNX files it measures
    carry the model's metadata."""
    protocol = choose_protocol(crop_protocol)  # test crops: by default the published protocol
    if checkpoint is not None:
        model, description, device = checkpoint.model, checkpoint.description, checkpoint.device
        arch, weights = checkpoint.meta["arch"], "trained"
    else:
        device = pick_device()
        model, description = untrained_model(arch, head, image_size or 224, protocol, device)
        weights = "untrained"
    image_size, normalization = description.image_size, description.normalization
    name = row_name(arch, model.head.name)
    file_stem = name.replace("/", "_").replace(" ", "_")
    onnx_path, int8_path = work_dir / f"{file_stem}.onnx", work_dir / f"{file_stem}_int8.onnx"
    if calibration_samples:
        calibration = calibration_images(
            calibration_samples,
            image_size,
            protocol,
            calibration_count,
            normalization=normalization,
        )
    else:
        generator = torch.Generator().manual_seed(0)
        calibration = torch.randn(32, 3, image_size, image_size, generator=generator)
    functions = build_runtimes(
        model, description, onnx_path, int8_path, calibration, device, torch.get_num_threads()
    )
    sizes_mb = {
        "torch_fp32": file_size_mb(checkpoint.path) if checkpoint is not None else None,
        "onnx_fp32": file_size_mb(onnx_path),
        "onnx_int8": file_size_mb(int8_path),
    }
    result: dict = {
        "name": name,
        "arch": arch,
        "head": model.head.name,
        "fused": model.network.fused,
        "weights": weights,
        "checkpoint": None if checkpoint is None else str(checkpoint.path),
        "image_size": image_size,
        "crop_protocol": protocol.name,
        "parameters": count_parameters(model),
        "runtimes": {},
    }
    for name, function in functions.items():
        speed_model = model if name == "torch_fp32" else function
        speed_device = device if name == "torch_fp32" else torch.device("cpu")
        speed = measure_speed(speed_model, image_size, speed_device, timed_runs)
        entry = {"file_mb": sizes_mb[name], **speed}
        if test_samples and weights == "trained":
            errors = predict_samples(
                function, test_samples, image_size, protocol, normalization=normalization
            )
            entry["mae"] = mae_summary(errors.absolute_deg)
        result["runtimes"][name] = entry
    add_ratios(result["runtimes"])
    return result


def untrained_model(
    arch: str, head: str, image_size: int, protocol: CropProtocol, device: torch.device
) -> tuple[AnglesModel, ModelDescription]:
    """``arch`` with untrained weights and the head ``head`` (fused as deployed, on ``device``),
    and its description: ``image_size`` px, the arch's normalisation, crops of ``protocol``."""
    network = fused_for_inference(build_model(arch, default_head(head)))
    model = AnglesModel(network).to(device).eval()
    normalization = get_arch(arch).normalization
    return model, ModelDescription(image_size, normalization, protocol, model.head.meta(), arch)


def add_ratios(runtimes: dict[str, dict]) -> None:
    """Add to each runtime's entry its speed-ups over ``torch_fp32`` at batch 1 and 32, and its
    mean MAE's increase over it (when measured)."""
    reference = runtimes["torch_fp32"]
    for entry in runtimes.values():
        entry["speedup_batch1"] = round(reference[LATENCY_KEY] / entry[LATENCY_KEY], 3)
        entry["speedup_batch32"] = round(entry[THROUGHPUT_KEY] / reference[THROUGHPUT_KEY], 3)
        if "mae" in entry:
            entry["mae_mean_increase_deg"] = round(
                entry["mae"]["mean"] - reference["mae"]["mean"], 4
            )


def run_benchmark(
    archs: list[str],
    checkpoints: dict[str, LoadedModel],
    threads: int,
    head: str = DEFAULT_HEAD,
    image_size: int | None = None,
    test_list: str | None = None,
    calibration_list: str | None = None,
    timed_runs: int = 20,
    crop_protocol: CropProtocol | None = None,
) -> dict:
    """Benchmark every backbone in one run: ``archs`` are row names, those in ``checkpoints``
    (row name -> the opened checkpoint, :func:`checkpoint_rows`) trained, the others untrained
    archs with ``head``."""
    torch.set_num_threads(threads)
    test_samples = read_samples(test_list) if test_list else None
    calibration_samples = read_samples(calibration_list) if calibration_list else None
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for arch in archs:
            rows.append(
                benchmark_backbone(
                    arch,
                    checkpoints.get(arch),
                    image_size,
                    Path(work),
                    head=head,
                    test_samples=test_samples,
                    calibration_samples=calibration_samples,
                    timed_runs=timed_runs,
                    crop_protocol=crop_protocol,
                )
            )
    return {
        "threads": threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "test_list": test_list,
        "backbones": {row["name"]: row for row in rows},
    }


def format_table(report: dict) -> str:
    """One line per backbone and runtime, ratios against the backbone's PyTorch fp32."""
    width = max([len("backbone"), *(len(name) for name in report["backbones"])]) + 2
    header = (
        f"{'backbone':<{width}}{'weights':<11}{'runtime':<12}{'px':>5}{'params M':>9}{'MB':>7}"
        f"{'MAE':>7}{'ms/img b1':>11}{'img/s b32':>11}{'x b1':>7}{'x b32':>7}"
    )
    lines = [header]
    for row in report["backbones"].values():
        for name, entry in row["runtimes"].items():
            size = "-" if entry["file_mb"] is None else f"{entry['file_mb']:.1f}"
            mae = f"{entry['mae']['mean']:.2f}" if "mae" in entry else "-"
            lines.append(
                f"{row['name']:<{width}}{row['weights']:<11}{name:<12}{row['image_size']:>5}"
                f"{row['parameters'] / 1e6:>9.2f}{size:>7}{mae:>7}{entry[LATENCY_KEY]:>11.2f}"
                f"{entry[THROUGHPUT_KEY]:>11.1f}{entry['speedup_batch1']:>7.2f}"
                f"{entry['speedup_batch32']:>7.2f}"
            )
    lines.append(
        f"threads {report['threads']} (torch and onnxruntime), load average "
        f"{report['load_average_1min']} at the end; ratios (x) are against PyTorch fp32 of the "
        "same backbone in this run. 'untrained' rows are for timing only."
    )
    return "\n".join(lines)


def checkpoint_rows(paths: list[str], image_size: int | None = None) -> dict[str, LoadedModel]:
    """Row name -> each trained checkpoint (named by its arch and head), opened once in PyTorch
    on the default device (CUDA when available) at ``image_size`` (default: its own)."""
    rows: dict[str, LoadedModel] = {}
    for path in paths:
        loaded = open_model(path, "torch", image_size=image_size)
        rows[row_name(loaded.meta["arch"], loaded.model.head.name)] = loaded
    return rows
