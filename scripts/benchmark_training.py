"""How close does training come to what the device does? Loader, step and loop against the ceiling.

At the settings of params.yaml (``--set key=value`` overrides; ``precision`` and ``compile``
included) one run:

1. prepares the whole ``--list`` through the crop store the train stage uses
   (:mod:`headpose.crops.store`): hashes the samples, builds the store unless it exists, opens it
   memory-mapped; prints each time and the store's size on disk;
2. times ``--batches`` batches of each of these, ``--rounds`` times, interleaved, keeping the
   best time of each:

   * ``reference step``: the ceiling. The same model, head, optimizer, precision and memory
     format training on one batch that already sits on the device as model input: no loader,
     no crops, no copies;
   * ``loader alone``: the training DataLoader (whole batches of cached regions gathered from
     the store, each item's random choices drawn);
   * ``per-sample loader``: the loader this one replaced, for comparison: each item's crop cut,
     flipped and blurred on the CPU in the loader (OpenCV), then collated;
   * ``device crops``: the crops, flips and blurs of loaded batches made on the device
     (:mod:`headpose.crops.training_batches`), alone;
   * ``step alone``: the training step on batches loaded beforehand (device crops, forward,
     loss, backward, optimizer);
   * ``whole loop``: the real training loop (:func:`headpose.training.epoch.train_one_epoch`)
     over the loader;


The machine may be shared: the numbers are taken side by side in one process, so compare their
ratios, not absolute values.

    python scripts/benchmark_training.py --list data/300W_AUG/train.txt --batches 20
    python scripts/benchmark_training.py --set image_size=224 --set batch_size=128 --batches 4
"""

from __future__ import annotations

import argparse
import itertools
import time

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from headpose.crops.protocols import DEFAULT_PROTOCOL
from headpose.crops.store.build import build_store
from headpose.crops.store.key import store_key, store_root
from headpose.crops.store.read import open_store, store_size_bytes
from headpose.crops.store.spec import StoreSpec
from headpose.crops.training_batches import (
    TrainingRegions,
    augmented_crops,
    in_region,
)
from headpose.datasets.registry import read_samples
from headpose.errors import exit_on_error
from headpose.geometry import flip_angles
from headpose.io.yaml_text import parse_yaml
from headpose.models.network import build_model, pick_device
from headpose.models.registry import get_arch
from headpose.params import load_params
from headpose.training.data import make_train_loader
from headpose.training.epoch import input_maker, train_one_epoch
from headpose.training.memory import PeakPrivateMemory
from headpose.training.precision import check_compiler, choose_precision
from headpose.training.schedule import Phase, make_optimizer, set_train_mode
from headpose.training.settings import TrainSettings


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
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if any)")
    parser.add_argument("--set", action="append", default=[], help="override a param: key=value")
    return parser.parse_args()


@exit_on_error
def main() -> None:
    args = _parse_arguments()
    params = load_params(args.params)
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        params = params.replace(**{key: parse_yaml(value, f"--set {key}")})  # validated again
    with PeakPrivateMemory() as memory:
        benchmark(TrainSettings.from_params(params), args)
    print(memory.summary())


class PerSampleCrops(Dataset):
    """The loader before device crops, kept as the baseline: item by item on the CPU, the same
    draws, the crop warped out of the cached region by OpenCV, flipped and blurred (a re-framed
    crop is cut from its sharp region alone: the old loader had no framing augmentation)."""

    KERNEL = DEFAULT_PROTOCOL.blur_kernel  # the device blur's kernel, applied by OpenCV

    def __init__(self, regions: TrainingRegions):
        self.regions = regions

    def __len__(self) -> int:
        return len(self.regions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        draw = self.regions.draw(index)
        crops = self.regions.crops
        region = tuple(float(v) for v in crops.regions[index])
        x0, y0, x1, y1 = in_region(draw.rectangle, region, crops.spec.side)
        flipped, blurred = draw.flipped, draw.blurred
        size = self.regions.image_size
        step_x, step_y = (x1 - x0) / size, (y1 - y0) / size
        warp = np.array([[step_x, 0, x0 + step_x / 2 - 0.5], [0, step_y, y0 + step_y / 2 - 0.5]])
        region = self.regions.crops.images[index]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        crop = cv2.warpAffine(region, warp, (size, size), flags=flags, borderValue=0)
        if flipped:
            crop = crop[:, ::-1]
        if blurred:
            crop = cv2.filter2D(np.ascontiguousarray(crop), -1, self.KERNEL)
        angles = self.regions.crops.angles_deg[index]
        angles = flip_angles(angles) if flipped else angles.copy()
        return torch.from_numpy(np.ascontiguousarray(crop)), torch.from_numpy(angles)


def benchmark(settings: TrainSettings, args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    precision = choose_precision(settings.precision, device)
    if settings.compile:
        check_compiler(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    size, workers, protocol = settings.image_size, settings.loader.workers, settings.crop_protocol
    samples = read_samples(args.list)

    framing = settings.framing
    spec = StoreSpec(size, protocol, "train", framing.context_extent())
    key, hash_s = _run_timed(lambda: store_key(samples, spec, workers))
    folder, build_s = build_store(samples, spec, key, store_root(), workers)
    crops, open_s = _run_timed(lambda: open_store(folder, samples, spec))
    print(
        f"crop store {folder}: {len(samples)} samples, "
        f"{store_size_bytes(folder) / 2**30:.2f} GiB on disk; data preparation "
        f"{hash_s + build_s + open_s:.1f} s = hash {hash_s:.1f} s + build {build_s:.1f} s "
        f"({'reused' if build_s == 0 else f'{len(samples) / build_s:.0f} samples/s'}) "
        f"+ open {open_s:.2f} s"
    )

    dataset = TrainingRegions(crops, seed=settings.train_seed, framing=framing)
    dataset.set_epoch(1)
    loader, sampler = make_train_loader(dataset, settings.loader, device)
    sampler.set_epoch(1)
    batch_size, batches = loader.sampler.batch_size, min(args.batches, len(loader))
    images = batches * batch_size
    per_sample = DataLoader(
        PerSampleCrops(dataset),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        persistent_workers=loader.num_workers > 0,
    )

    head = settings.head
    model = build_model(settings.arch, head, settings.pretrained)
    model = model.to(device, memory_format=precision.memory_format)
    optimizer = make_optimizer(model, Phase("frozen_stem", 1, 1, settings.lr))
    scaler = precision.grad_scaler()
    set_train_mode(model, stem_frozen=True)
    network = torch.compile(model) if settings.compile else model
    make_inputs = input_maker(
        size, protocol, get_arch(settings.arch).normalization, device, precision
    )

    def synchronized(function):
        def run():
            function()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return run

    def epoch(source) -> None:
        train_one_epoch(
            network, source, optimizer, scaler, head, make_inputs, precision, "benchmark", False
        )

    def epoch_on_inputs(inputs, step_optimizer=optimizer) -> None:
        train_one_epoch(
            network,
            inputs,
            step_optimizer,
            scaler,
            head,
            lambda ready: ready,
            precision,
            "ref",
            False,
        )

    # The optimiser this project used before its fused Adam, kept for comparison: PyTorch's
    # default on the CPU, a loop over the parameters (the same update; its own moment buffers).
    looped = torch.optim.Adam(
        [{"params": group["params"], "lr": group["lr"]} for group in optimizer.param_groups],
        foreach=False,
        fused=False,
    )

    def forward_on_inputs(inputs, backward: bool) -> None:
        for images, angles_deg in inputs:
            with precision.autocast():
                outputs = network(images)
            loss = head.loss(outputs, angles_deg)
            if backward:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
        optimizer.zero_grad(set_to_none=True)

    preloaded = list(itertools.islice(loader, batches))
    resident = [make_inputs(preloaded[0])] * batches  # the reference: input already on device

    timings = {
        "reference step": synchronized(lambda: epoch_on_inputs(resident)),
        "ref., looped Adam": synchronized(lambda: epoch_on_inputs(resident, looped)),
        "loader alone": lambda: list(itertools.islice(loader, batches)),
        "per-sample loader": lambda: list(itertools.islice(per_sample, batches)),
        "device crops": synchronized(
            lambda: [augmented_crops(batch, size, protocol, device) for batch in preloaded]
        ),
        "step alone": synchronized(lambda: epoch(preloaded)),
        "whole loop": synchronized(lambda: epoch(itertools.islice(loader, batches))),
        "forward": synchronized(lambda: forward_on_inputs(resident, backward=False)),
        "forward + backward": synchronized(lambda: forward_on_inputs(resident, backward=True)),
    }

    synchronized(lambda: epoch(preloaded[:2]))()  # warm-up: allocator, kernels, compilation
    synchronized(lambda: epoch_on_inputs(resident[:2]))()
    # Interleaved rounds, best of each: load from other processes hits all alike.
    best = dict.fromkeys(timings, float("inf"))
    for _ in range(args.rounds):
        for name, function in timings.items():
            best[name] = min(best[name], _timed(function))
    print(
        f"{settings.arch} {size} px, batch {batch_size}, {batches} batches, device "
        f"{device.type}, {precision.name}{', channels-last' if precision.channels_last else ''}"
        f"{', compiled' if settings.compile else ''}, torch threads {torch.get_num_threads()}, "
        f"loader workers {loader.num_workers}"
    )
    reference = best["reference step"]
    for name, seconds in best.items():
        print(
            f"{name:>18}: {images / seconds:9.1f} images/s "
            f"{reference / seconds:6.2f} x reference step"
        )
    print(
        f"whole loop / step alone: {best['step alone'] / best['whole loop']:.3f}; "
        f"whole loop / reference step: {reference / best['whole loop']:.3f}; "
        f"loader alone / per-sample loader: {best['per-sample loader'] / best['loader alone']:.2f}"
    )
    print_step_profile(best, batches)


def step_profile(best: dict[str, float], batches: int) -> dict[str, float]:
    """Where a whole-loop step's time goes, seconds per batch: each part a difference of the
    best timings (``forward`` alone; ``backward`` = forward + backward - forward; ``optimiser``
    = reference step - forward + backward; ``rest`` = whole loop - all the others: Python, the
    loss sum, the inputs' conversion). Parts timed apart can overlap or share caches, so a part
    may come out slightly negative: it is shown as measured."""
    parts = {
        "loader": best["loader alone"],
        "device crops": best["device crops"],
        "forward": best["forward"],
        "backward": best["forward + backward"] - best["forward"],
        "optimiser": best["reference step"] - best["forward + backward"],
    }
    parts["rest"] = best["whole loop"] - sum(parts.values())
    return {name: seconds / batches for name, seconds in parts.items()}


def print_step_profile(best: dict[str, float], batches: int) -> None:
    """The profile of one whole-loop step (:func:`step_profile`), ms per batch and share."""
    parts = step_profile(best, batches)
    whole = best["whole loop"] / batches
    print(f"profile of a whole-loop step ({whole * 1000:.1f} ms per batch):")
    for name, seconds in parts.items():
        print(f"{name:>18}: {seconds * 1000:8.1f} ms {seconds / whole:7.1%}")


if __name__ == "__main__":
    main()
