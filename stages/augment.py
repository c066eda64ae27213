"""Stage ``augment``: build 300W_AUG, the training list plus in-plane rotated copies.

Reads ``augment``, ``aug_fraction``, ``aug_angles``, ``max_angle``, ``train_data``, ``seed`` and
``workers`` from params.yaml and ``data/filelists/train.txt``; writes ``data/300W_AUG/``
(rotated samples, ``train.txt`` = originals + copies, ``angles.tsv``, ``skipped.tsv``) and
``metrics/augment.json``.
"""

from __future__ import annotations

from headpose.datasets.augment import build_augmentation
from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.io.formats import read_list
from headpose.params import load_params

TRAIN_LIST = "data/filelists/train.txt"
OUTPUT_FOLDER = "data/300W_AUG"
METRICS_FILE = "metrics/augment.json"


@exit_on_error
def main() -> None:
    params = load_params()
    augmentation = build_augmentation(
        read_list(TRAIN_LIST),
        params["train_data"],
        OUTPUT_FOLDER,
        enabled=params["augment"],
        fraction=params["aug_fraction"],
        angles_deg=params["aug_angles"],
        max_angle_deg=params["max_angle"],
        seed=params["seed"],
        workers=params["workers"],
    )
    write_json(METRICS_FILE, augmentation.metrics)
    metrics = augmentation.metrics
    print(
        f"augment: {metrics['rotated_written']} rotated copies of {metrics['chosen']} samples, "
        f"{metrics['rotated_skipped']} skipped; {metrics['combined']} in {OUTPUT_FOLDER}/train.txt"
    )


if __name__ == "__main__":
    main()
