"""Stage ``filelists``: scan and check the datasets, write train/val/test lists.

Reads ``train_data``, ``test_data``, ``max_angle``, ``val_fraction``, ``seed`` and ``workers``
from params.yaml; writes ``data/filelists/`` and ``metrics/filelists.json``.
"""

from __future__ import annotations

from headpose.datasets.filelists import build_filelists, write_filelists
from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params

OUTPUT_FOLDER = "data/filelists"
METRICS_FILE = "metrics/filelists.json"


@exit_on_error
def main() -> None:
    params = load_params()
    lists = build_filelists(
        params["train_data"],
        params["test_data"],
        max_angle_deg=params["max_angle"],
        val_fraction=params["val_fraction"],
        seed=params["seed"],
        workers=params["workers"],
    )
    write_filelists(lists, OUTPUT_FOLDER)
    write_json(METRICS_FILE, lists.metrics)
    print(
        f"filelists: {len(lists.train)} train, {len(lists.val)} val, {len(lists.test)} test, "
        f"{len(lists.skipped)} skipped (see {OUTPUT_FOLDER}/skipped.tsv)"
    )


if __name__ == "__main__":
    main()
