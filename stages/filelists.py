"""Stage ``filelists``: scan and check the datasets, write train/val/test lists.

Reads the ``max_angle``, ``val_fraction``, ``seed``, ``workers`` and ``held_out_sequences``
(BIWI protocol 2) params and the two dataset folders (the ``train_data`` / ``test_data``
params, passed on dvc.yaml's ``cmd``); writes the list folder and the metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headpose.datasets.filelists import build_filelists, write_filelists
from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params
from headpose.registry import load_plugins


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--train-data", required=True, help="300W_LP-format training folder")
    parser.add_argument("--test-data", required=True, help="AFLW2000-format test folder")
    parser.add_argument("--out", required=True, help="output folder of the lists")
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    params = load_params(args.params)
    load_plugins(params.plugins)  # before anything is looked up
    lists = build_filelists(
        args.train_data,
        args.test_data,
        max_angle_deg=params.max_angle,
        val_fraction=params.val_fraction,
        seed=params.seed,
        workers=params.workers,
        held_out_sequences=params.held_out_sequences,
    )
    write_filelists(lists, args.out)
    write_json(args.metrics, lists.metrics)
    print(
        f"filelists: {len(lists.train)} train, {len(lists.val)} val, {len(lists.test)} test, "
        f"{len(lists.skipped)} skipped (see {Path(args.out) / 'skipped.tsv'})"
    )


if __name__ == "__main__":
    main()
