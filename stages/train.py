"""Stage ``train``: train the model on the augmented training list, validate every epoch.

Reads every training key of params.yaml
(:meth:`headpose.training.settings.TrainSettings.from_params`) and ``gpus``, the training list
(300W_AUG's) and the validation list; writes the models folder (``model.pt``, ``best.pt``), the
dvclive folder and the metrics. An interrupted run resumes from the resume file (outside every
DVC output, git-ignored) when re-run with the same params.

First it claims ``gpus`` free GPUs (a lock per device, :mod:`headpose.training.gpus`; it waits
while none is free, and the claim ends with the process), so parallel queued experiments each
train on their own. ``gpus: N`` (N > 1) re-launches this script, with the same arguments, under
torchrun on N processes (one per claimed GPU); rank 0 writes the outputs.
``HEADPOSE_DDP_BACKEND=gloo`` allows that on the CPU (for testing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params
from headpose.registry import load_plugins
from headpose.training.distributed import is_main_process, relaunch_under_torchrun
from headpose.training.gpus import claim_gpus
from headpose.training.run import run_training
from headpose.training.settings import TrainPaths, TrainSettings


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--train-list", required=True, type=Path, help="training sample list")
    parser.add_argument("--val-list", required=True, type=Path, help="validation sample list")
    parser.add_argument("--models", required=True, type=Path, help="output folder of checkpoints")
    parser.add_argument("--resume", required=True, type=Path, help="resume file (not an output)")
    parser.add_argument("--live", required=True, type=Path, help="dvclive folder")
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    params = load_params(args.params)
    load_plugins(params.plugins)  # before anything is looked up
    settings = TrainSettings.from_params(params)  # checks the model keys against the models
    claim = claim_gpus(params.gpus)  # empty without CUDA; held until the process ends
    if claim.indices:
        print(f"claimed GPU(s) {claim.visible_devices()} (CUDA_VISIBLE_DEVICES ids)")
    relaunch_under_torchrun(params.gpus, claim.visible_devices())
    paths = TrainPaths(args.train_list, args.val_list, args.models, args.resume, args.live)
    metrics = run_training(settings, paths, claim.training_device())
    if is_main_process():
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
