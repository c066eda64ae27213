"""Is the training input a bottleneck? Images/s of loader, step and whole loop, side by side.

One run measures, at the settings of params.yaml (``--set key=value`` overrides), each
``--rounds`` times, interleaved, keeping the best time of each:

1. ``loader``: the training DataLoader alone (random crop, flip, blur, normalise, collate);
2. ``step``: the training step alone (forward, loss, backward, Adam) on batches loaded beforehand;
3. ``loop``: the real training loop (:func:`headpose.training.loop.train_one_epoch`) over the
   loader.

The loop should run within 10% of the step alone. The machine may be shared: the numbers are
taken side by side in one process, so compare their ratios, not absolute values.

    python scripts/benchmark_training.py --list data/300W_AUG/train.txt --batches 20
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml
from torch.utils.data import Subset

from headpose.data.pipeline import PoseDataset, prepare_crops
from headpose.errors import exit_on_error
from headpose.io.formats import read_list
from headpose.models.heads import head_from_params
from headpose.models.network import build_model, pick_device
from headpose.params import load_params, validate
from headpose.training.loop import (
    Phase,
    make_optimizer,
    make_train_loader,
    set_train_mode,
    train_one_epoch,
)


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", default="data/300W_AUG/train.txt", help="training list")
    parser.add_argument("--batches", type=int, default=20, help="batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--set", action="append", default=[], help="override a param: key=value")
    args = parser.parse_args()
    params = load_params()
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        params[key] = yaml.safe_load(value)
    validate(params)

    device = pick_device()
    batch_size, batches = params["batch_size"], args.batches
    stems = read_list(args.list)[: batch_size * batches]
    crops = prepare_crops(stems, params["image_size"], params["workers"], "decode")
    dataset = PoseDataset(crops, params["image_size"], augment=True, seed=params["seed"])
    loader, _ = make_train_loader(Subset(dataset, range(len(crops))), params, device)
    images = len(loader) * batch_size

    head = head_from_params(params)
    model = build_model(params["arch"], head, params["pretrained"]).to(device)
    optimizer = make_optimizer(model, Phase("frozen_stem", 1, 1, params["lr"]))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    set_train_mode(model, stem_frozen=True)

    def epoch(source) -> None:
        train_one_epoch(model, source, optimizer, scaler, head, params, device, "benchmark")
        if device.type == "cuda":
            torch.cuda.synchronize()

    preloaded = list(loader)
    epoch(preloaded[:2])  # warm-up: allocator, kernels, lazy init
    # Interleaved rounds, best of each: load from other processes hits all three alike.
    loader_s = step_s = loop_s = float("inf")
    for _ in range(args.rounds):
        loader_s = min(loader_s, _timed(lambda: list(loader)))
        step_s = min(step_s, _timed(lambda: epoch(preloaded)))
        loop_s = min(loop_s, _timed(lambda: epoch(loader)))
    print(
        f"{params['arch']} {params['image_size']} px, batch {batch_size}, {len(loader)} batches, "
        f"device {device.type}, torch threads {torch.get_num_threads()}, "
        f"loader workers {loader.num_workers}"
    )
    for name, seconds in (
        ("loader alone", loader_s),
        ("step alone", step_s),
        ("whole loop", loop_s),
    ):
        print(f"{name:>13}: {images / seconds:8.1f} images/s")
    print(
        f"loop / step time: {loop_s / step_s:.3f} "
        f"(input pipeline overhead {loop_s / step_s - 1:+.1%})"
    )


if __name__ == "__main__":
    main()
