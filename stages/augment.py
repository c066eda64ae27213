"""Stage ``augment``: build 300W_AUG, the training list plus in-plane rotated copies.

Reads the ``augment``, ``aug_fraction``, ``aug_angles``, ``max_angle``, ``seed`` and ``workers``
params, the training list and the training folder (the ``train_data`` param, passed on dvc.yaml's
``cmd``); writes the 300W_AUG folder (rotated samples, ``train.txt`` = originals + copies,
``angles.tsv``, ``skipped.tsv``) and the metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headpose.datasets.augment import build_augmentation
from headpose.datasets.registry import read_samples
from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params
from headpose.registry import load_plugins


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--train-list", required=True, help="the filelists stage's train.txt")
    parser.add_argument("--train-data", required=True, help="300W_LP-format training folder")
    parser.add_argument("--out", required=True, help="output folder (300W_AUG)")
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    params = load_params(args.params)
    load_plugins(params.plugins)  # before anything is looked up
    augmentation = build_augmentation(
        read_samples(args.train_list),
        args.train_data,
        args.out,
        enabled=params.augment,
        fraction=params.aug_fraction,
        angles_deg=list(params.aug_angles),
        max_angle_deg=params.max_angle,
        seed=params.seed,
        workers=params.workers,
    )
    write_json(args.metrics, augmentation.metrics)
    metrics = augmentation.metrics
    print(
        f"augment: {metrics['rotated_written']} rotated copies of {metrics['chosen']} samples, "
        f"{metrics['rotated_skipped']} skipped; {metrics['combined']} in "
        f"{Path(args.out) / 'train.txt'}"
    )


if __name__ == "__main__":
    main()
