"""Stage ``train``: train the model on the augmented training list, validate every epoch.

Reads every training key of params.yaml (see headpose/train.py); reads
``data/300W_AUG/train.txt`` and ``data/filelists/val.txt``; writes ``models/model.pt``,
``models/best.pt``, ``dvclive/`` and ``metrics/train.json``. An interrupted run resumes from
``.resume/train.pt`` when re-run with the same params.
"""

from __future__ import annotations

from headpose.errors import exit_on_error
from headpose.files import write_json
from headpose.params import load_params
from headpose.train import run_training

METRICS_FILE = "metrics/train.json"


@exit_on_error
def main() -> None:
    metrics = run_training(load_params())
    write_json(METRICS_FILE, metrics)


if __name__ == "__main__":
    main()
