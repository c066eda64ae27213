"""Is the training input a bottleneck? Store build, memory and loader / step / loop images/s.

At the settings of params.yaml (``--set key=value`` overrides) one run:

1. prepares the whole ``--list`` through the crop store the train stage uses
   (:mod:`headpose.data.store`): hashes the samples, builds the store unless it exists, opens it
   memory-mapped; prints each time and the store's size on disk;
2. times ``--batches`` batches of the real training loader, each ``--rounds`` times,
   interleaved, keeping the best time of each:

   * ``loader``: the training DataLoader alone (random crop, flip, blur, collate as uint8);
   * ``step``: the training step alone (normalise on the device, forward, loss, backward, Adam)
     on batches loaded beforehand;
   * ``loop``: the real training loop (:func:`headpose.training.loop.train_one_epoch`) over the
     loader;

3. prints the process's peak private memory (RssAnon, sampled; VmHWM beside it).

The loop should run within 10% of the step alone. The machine may be shared: the numbers are
taken side by side in one process, so compare their ratios, not absolute values.

    python scripts/benchmark_training.py --list data/300W_AUG/train.txt --batches 20
    python scripts/benchmark_training.py --set image_size=224 --set workers=2 --batches 4
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import yaml

from headpose.data.pipeline import PoseDataset
from headpose.data.store import (
    StoreSpec,
    build_store,
    open_store,
    store_key,
    store_root,
    store_size_bytes,
)
from headpose.errors import exit_on_error
from headpose.io.formats import read_list
from headpose.models.heads import head_from_params
from headpose.models.network import build_model, pick_device
from headpose.models.registry import get_arch
from headpose.params import load_params, validate
from headpose.training.loop import (
    LoaderSettings,
    Phase,
    make_optimizer,
    make_train_loader,
    set_train_mode,
    train_one_epoch,
)
from headpose.training.memory import PeakPrivateMemory


def _timed(function) -> float:
    return _run_timed(function)[1]


def _run_timed(function):
    """(what ``function()`` returns, seconds it took)."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--list", default="data/300W_AUG/train.txt", help="training list")
    parser.add_argument("--batches", type=int, default=20, help="batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--set", action="append", default=[], help="override a param: key=value")
    return parser.parse_args()


@exit_on_error
def main() -> None:
    args = _parse_arguments()
    params = load_params(args.params)
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        params[key] = yaml.safe_load(value)
    validate(params)
    with PeakPrivateMemory() as memory:
        benchmark(params, args)
    print(memory.summary())


def benchmark(params: dict, args: argparse.Namespace) -> None:
    device = pick_device()
    size, workers = params["image_size"], params["workers"]
    stems = read_list(args.list)

    spec = StoreSpec(size, params["crop_protocol"], "train")
    key, hash_s = _run_timed(lambda: store_key(stems, spec, workers))
    folder, build_s = build_store(stems, spec, key, store_root(), workers)
    crops, open_s = _run_timed(lambda: open_store(folder, stems, spec))
    print(
        f"crop store {folder}: {len(stems)} samples, "
        f"{store_size_bytes(folder) / 2**30:.2f} GiB on disk; data preparation "
        f"{hash_s + build_s + open_s:.1f} s = hash {hash_s:.1f} s + build {build_s:.1f} s "
        f"({'reused' if build_s == 0 else f'{len(stems) / build_s:.0f} samples/s'}) "
        f"+ open {open_s:.2f} s"
    )

    dataset = PoseDataset(crops, seed=params["train_seed"])
    loader, sampler = make_train_loader(dataset, LoaderSettings.from_params(params), device)
    sampler.set_epoch(1)
    batch_size, batches = loader.batch_size, min(args.batches, len(loader))
    images = batches * batch_size

    def first_batches():
        return itertools.islice(loader, batches)

    head = head_from_params(params)
    model = build_model(params["arch"], head, params["pretrained"]).to(device)
    optimizer = make_optimizer(model, Phase("frozen_stem", 1, 1, params["lr"]))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    set_train_mode(model, stem_frozen=True)
    normalization = get_arch(params["arch"]).normalization

    def epoch(source) -> None:
        train_one_epoch(
            model, source, optimizer, scaler, head, normalization, device, "benchmark", False
        )
        if device.type == "cuda":
            torch.cuda.synchronize()

    preloaded = list(first_batches())
    epoch(preloaded[:2])  # warm-up: allocator, kernels, lazy init
    # Interleaved rounds, best of each: load from other processes hits all three alike.
    loader_s = step_s = loop_s = float("inf")
    for _ in range(args.rounds):
        loader_s = min(loader_s, _timed(lambda: list(first_batches())))
        step_s = min(step_s, _timed(lambda: epoch(preloaded)))
        loop_s = min(loop_s, _timed(lambda: epoch(first_batches())))
    print(
        f"{params['arch']} {size} px, batch {batch_size}, {batches} batches, "
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
        f"(input pipeline overhead {loop_s / step_s - 1:+.1%}; loop speed "
        f"{step_s / loop_s:.2f} x the step alone)"
    )


if __name__ == "__main__":
    main()
