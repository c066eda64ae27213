"""The training-step memory estimate against measured steps, side by side.

For each (arch, image size, batch): the estimate the CPU preflight uses
(:func:`headpose.training.memory.step_bytes`) and the peak private memory (``RssAnon``, sampled)
one real step adds (forward, backward and an Adam step on random images, in the default
precision), and their ratio. Each case runs in a fresh process, so one's freed memory does not
hide the next one's growth.

    python scripts/benchmark_memory_estimate.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CASES = [  # arch, image size, batch, precision (auto: the params' default on this CPU)
    ("resnet18", 64, 512, "auto"),
    ("resnet50", 64, 64, "auto"),
    ("resnet50", 64, 256, "auto"),
    ("resnet50", 128, 128, "auto"),
    ("resnet50", 224, 32, "auto"),
    ("mobilenet_v2", 64, 256, "auto"),
    ("resnet50", 64, 256, "float32"),
    ("resnet18", 224, 64, "float32"),
]
REPO = Path(__file__).resolve().parents[1]


def measure(arch: str, image_size: int, batch_size: int, precision_name: str) -> dict:
    """In this process: the estimate and the measured growth of one step, in MiB."""
    import torch

    from headpose.models.network import build_model
    from headpose.params import load_params
    from headpose.training.memory import PeakPrivateMemory, status_mib, step_bytes
    from headpose.training.precision import choose_precision
    from headpose.training.settings import TrainSettings

    head = TrainSettings.from_params(load_params(REPO / "params.yaml")).head
    model = build_model(arch, head)
    precision = choose_precision(precision_name, torch.device("cpu"))
    estimate = step_bytes(model, image_size, batch_size, precision) / 2**20
    optimizer = torch.optim.Adam(model.parameters())
    images = torch.randn(batch_size, 3, image_size, image_size)
    before = status_mib("RssAnon")
    with PeakPrivateMemory() as peak:
        with precision.autocast():
            outputs = model(images)
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        sum(output.float().sum() for output in outputs).backward()
        optimizer.step()
    return {
        "precision": precision.name,
        "estimate_mib": round(estimate),
        "measured_mib": round(peak.private_mib - before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=4, metavar=("ARCH", "SIZE", "BATCH", "PRECISION"))
    args = parser.parse_args()
    if args.case:
        arch, size, batch, precision = args.case
        print(json.dumps(measure(arch, int(size), int(batch), precision)))
        return
    header = ("arch", "size", "batch", "estimate MiB", "measured MiB", "ratio")
    print("{:<14}{:>6}{:>7}{:>14}{:>14}{:>7}".format(*header))
    for arch, size, batch, precision in CASES:
        case = [arch, str(size), str(batch), precision]
        result = subprocess.run(
            [sys.executable, __file__, "--case", *case], capture_output=True, text=True, check=True
        )
        row = json.loads(result.stdout.strip().splitlines()[-1])
        ratio = row["estimate_mib"] / row["measured_mib"]
        print(
            f"{arch:<14}{size:>6}{batch:>7}{row['estimate_mib']:>14}{row['measured_mib']:>14}"
            f"{ratio:>7.2f}  ({row['precision']})"
        )


if __name__ == "__main__":
    main()
