"""Runtimes: a model as a function from normalised crops to degrees, and how fast it runs.

A PyTorch :class:`headpose.models.network.AnglesModel` and its exported ONNX files (fp32 and
int8) map a ``(N, 3, S, S)`` batch of normalised crops straight to ``(N, 3)`` angles in degrees.
Every runtime is wrapped as an :data:`AngleFunction` (a normalised float batch to a numpy
``(N, 3)`` array of yaw, pitch, roll degrees), so prediction, evaluation and the benchmark treat
PyTorch, ONNX Runtime fp32 and int8 models alike. :func:`measure_speed` times any of them (median
latency at batch 1 after warm-up, throughput at batch 32); timings are reported apart from the
accuracy metrics, which must not change from run to run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headpose.errors import HeadposeError
from headpose.io.files import file_problem

THROUGHPUT_BATCH_SIZE = 32
TIMED_RUNS = 20
WARMUP_RUNS = 3

# A normalised (N, 3, S, S) float batch -> (N, 3) yaw, pitch, roll in degrees.
AngleFunction = Callable[[torch.Tensor], np.ndarray]


def torch_angle_function(model: nn.Module, autocast: bool = False) -> AngleFunction:
    """Run an :class:`~headpose.models.network.AnglesModel` (on the device its weights are on)
    without gradients; ``autocast``: in mixed precision on CUDA (as training validates)."""
    device = next(model.parameters()).device
    mixed = autocast and device.type == "cuda"

    def predict(images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            with torch.autocast(device_type=device.type, enabled=mixed):
                outputs = model.network(images.to(device, non_blocking=True))
            return model.head.angles_deg(outputs).float().cpu().numpy()

    return predict


def onnx_session(path: str | os.PathLike, threads: int | None = None, allow_spinning: bool = True):
    """An ONNX Runtime CPU session for ``path``; ``threads`` sets intra-op threads (None: ORT's).

    ``allow_spinning=False`` stops idle worker threads from busy-waiting after each run, which
    otherwise takes the CPU from other work between calls (the face detector, in prediction).
    """
    import onnxruntime

    file = Path(path)
    problem = file_problem(file)
    if problem:
        raise HeadposeError(f"ONNX model {file} {problem}")
    options = onnxruntime.SessionOptions()
    if not allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise HeadposeError(f"{file} is not a loadable ONNX model: {error}") from None


def onnx_angle_function(session) -> AngleFunction:
    """Run an exported angles model (one input, first output = (N, 3) degrees) in ONNX Runtime."""
    input_name = session.get_inputs()[0].name

    def predict(images: torch.Tensor) -> np.ndarray:
        batch = images.detach().cpu().numpy().astype(np.float32, copy=False)
        return session.run(None, {input_name: batch})[0]

    return predict


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
