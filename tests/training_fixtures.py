"""Tiny on-disk datasets for the data and training tests (random pixels, random poses)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, as_samples

from headpose.datasets.mat import write_sample
from headpose.params import Params, load_params


def write_tiny_dataset(folder: Path, count: int, seed: int = 0, size: int = 40) -> list[str]:
    """Write ``count`` samples (``size`` px, 68 landmarks, random angles); return their stems."""
    rng = np.random.default_rng(seed)
    stems = []
    for index in range(count):
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        landmarks = rng.uniform(0.3 * size, 0.7 * size, (2, 68))
        angles_rad = np.radians(rng.uniform(-60, 60, 3))
        pose_para = np.array([[*angles_rad, size / 2, size / 2, 0.0, 1e-3]], dtype=np.float32)
        stem = folder / f"sample_{index:03d}"
        write_sample(stem, image, {"Pose_Para": pose_para, "pt2d": landmarks})
        stems.append(str(stem))
    return stems


def write_list(path: Path, stems: list[str]) -> Path:
    path.write_text("".join(stem + "\n" for stem in stems), encoding="utf-8")
    return path


TINY_TRAINING = {
    "arch": "resnet18",
    "pretrained": "none",
    "image_size": 32,
    "batch_size": 8,
    "epochs": 2,
    "finetune_epochs": 1,
    "lr": 1e-3,
    "finetune_lr": 3e-4,
    "lr_schedule": "exponential",  # the published schedule; onecycle has its own tests
    "workers": 1,
    "train_seed": 0,
}


def tiny_params(**overrides) -> Params:
    """The repo's params.yaml with a tiny, fast training setup, then ``overrides`` (validated:
    a bad override raises the HeadposeError the file would)."""
    return load_params(REPO_ROOT / "params.yaml").replace(**{**TINY_TRAINING, **overrides})


def tiny_settings(**overrides):
    """The training settings of :func:`tiny_params` (``overrides`` included)."""
    from headpose.training.settings import TrainSettings

    return TrainSettings.from_params(tiny_params(**overrides))


def tiny_run_paths(folder: Path, stems: list[str]):
    """TrainPaths in ``folder`` for training on ``stems[:16]`` and validating on the rest."""
    from headpose.training.settings import TrainPaths

    return TrainPaths(
        write_list(folder / "train.txt", stems[:16]),
        write_list(folder / "val.txt", stems[16:]),
        folder / "models",
        folder / "resume.pt",
        folder / "live",
    )


def train_on_lists(folder: Path) -> Path:
    """Train a tiny model (one epoch) on ``folder``'s ``train.txt`` and ``val.txt`` (as the
    filelists stage writes them), in that folder; return its final checkpoint."""
    from headpose.training.run import run_training
    from headpose.training.settings import TrainPaths

    paths = TrainPaths(
        folder / "train.txt",
        folder / "val.txt",
        folder / "models",
        folder / "resume.pt",
        folder / "live",
    )
    run_training(tiny_settings(epochs=1, finetune_epochs=0), paths)
    return paths.models_dir / "model.pt"


def check_head_end_to_end(head: str, folder: Path) -> dict:
    """Train a tiny model with ``head`` (random data, 32 px, 2 + 1 epochs), then load its
    checkpoint, evaluate it and export it to ONNX (fp32 + int8), checking each step against the
    previous one; return the checkpoint's meta."""
    from headpose.deploy.export import export_for_deployment
    from headpose.evaluation.evaluate import evaluate, format_report
    from headpose.inference.loading import open_model
    from headpose.models.heads import head_from_meta
    from headpose.training.run import run_training

    stems = write_tiny_dataset(folder, 24)
    paths = tiny_run_paths(folder, stems)
    metrics = run_training(tiny_settings(head=head), paths)
    assert metrics["final"]["epoch"] == 3 and math.isfinite(metrics["final"]["train_loss"])
    checkpoint = paths.models_dir / "model.pt"
    meta = torch.load(checkpoint, weights_only=True)["meta"]
    loaded_head = head_from_meta(meta)
    assert meta["head"] == head and loaded_head.meta().items() <= meta.items()
    result = evaluate(open_model(checkpoint), as_samples(stems[16:]), "val")
    assert result.metrics["mae"]["count"] == 8
    # the evaluation scores the model as validation did, and its report names the head
    assert result.metrics["mae"]["mean"] == pytest.approx(metrics["final"]["mae_mean"], abs=1e-3)
    assert loaded_head.label() in format_report(result.metrics, checkpoint, "val")
    exported = export_for_deployment(
        checkpoint, folder / "deploy", as_samples(stems), as_samples(stems[16:]), workers=1
    )
    assert exported["parity_max_abs_deg"] < 0.01
    assert math.isfinite(exported["mae"]["onnx_int8"]["mean"])
    assert (folder / "deploy" / "model.onnx").is_file()
    return meta
