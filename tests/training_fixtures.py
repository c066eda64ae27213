"""Tiny on-disk datasets for the data and training tests (random pixels, random poses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headpose.io.formats import write_sample
from headpose.params import load_params

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def tiny_params(**overrides) -> dict:
    """The repo's params.yaml with a tiny, fast training setup, then ``overrides``."""
    params = load_params(REPO_ROOT / "params.yaml")
    params.update(
        arch="resnet18",
        pretrained="none",
        image_size=32,
        batch_size=8,
        epochs=2,
        finetune_epochs=1,
        lr=1e-3,
        finetune_lr=3e-4,
        workers=1,
        train_seed=0,
    )
    params.update(overrides)
    return params
