"""Stage ``train``: train the model on the augmented training list, validate every epoch.

Reads every training key of params.yaml (see headpose/training/loop.py); reads
``data/300W_AUG/train.txt`` and ``data/filelists/val.txt``; writes ``models/model.pt``,
``models/best.pt``, ``dvclive/`` and ``metrics/train.json``. An interrupted run resumes from
``.resume/train.pt`` when re-run with the same params.

``gpus: N`` (N > 1) re-launches this script under torchrun on N processes (one per GPU); rank 0
writes the outputs. ``HEADPOSE_DDP_BACKEND=gloo`` allows that on the CPU (for testing).
"""

from __future__ import annotations

from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params
from headpose.training.distributed import is_main_process, relaunch_under_torchrun
from headpose.training.loop import run_training

METRICS_FILE = "metrics/train.json"


@exit_on_error
def main() -> None:
    params = load_params()
    relaunch_under_torchrun(params["gpus"])
    metrics = run_training(params)
    if is_main_process():
        write_json(METRICS_FILE, metrics)


if __name__ == "__main__":
    main()
