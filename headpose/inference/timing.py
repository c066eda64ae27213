"""How fast a runtime runs: median latency at batch 1 after warm-up, throughput at batch 32.

Timings are reported apart from the accuracy metrics, which must not change from run to run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

THROUGHPUT_BATCH_SIZE = 32
TIMED_RUNS = 20
WARMUP_RUNS = 3


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
    :data:`~headpose.inference.runtime.AngleFunction` (then ``device`` is the CPU)."""
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
