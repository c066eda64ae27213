"""Stage ``analyze``: angle and framing distributions of train, 300W_AUG and test.

Reads the list folder of the filelists stage, the 300W_AUG folder and ``params.yaml`` (the crop
protocol, input size and framing augmentation the framing is measured under); writes the metrics
(percentile tables, and the ``framing`` section with whether the test framing lies inside the
training framing's 5-95 % range, also printed as one line), the overlaid angle histograms
``{yaw,pitch,roll}.png`` of the samples used and the framing histograms ``framing.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headpose.crops.framing import FRAMING_KEYS, FramingAugmentation
from headpose.crops.framing_stats import framing_distributions, inside_line, measure_framing
from headpose.crops.protocols import protocol_from_params
from headpose.datasets.analyze import dataset_angles, distributions
from headpose.datasets.registry import read_samples
from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params
from headpose.plots import plot_angle_histograms, plot_framing_histograms
from headpose.registry import load_plugins

REFERENCE = "300W_AUG"  # the list the train stage reads


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--filelists", required=True, help="the filelists stage's folder")
    parser.add_argument("--augmented", required=True, help="the augment stage's folder")
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    parser.add_argument("--plots", required=True, help="folder of the histograms")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    params = load_params(args.params)
    load_plugins(params.plugins)  # before anything is looked up
    filelists, augmented = Path(args.filelists), Path(args.augmented)
    angles = dataset_angles(filelists, augmented)
    framing = FramingAugmentation.from_params(params.as_dict(FRAMING_KEYS))
    training_lists = {
        "train": read_samples(filelists / "train.txt"),
        REFERENCE: read_samples(augmented / "train.txt"),
    }
    measured = measure_framing(
        training_lists,
        read_samples(filelists / "test.txt"),
        params.image_size,
        protocol_from_params(params.crop_protocol),
        framing,
        params.seed,
        params.workers,
    )
    settings = {
        "crop_protocol": params.crop_protocol,
        "image_size": params.image_size,
        **params.as_dict(FRAMING_KEYS),
    }
    section = framing_distributions(measured, REFERENCE, settings)
    write_json(args.metrics, {**distributions(angles), "framing": section})
    used = {dataset: subsets["used"] for dataset, subsets in angles.items()}
    paths = plot_angle_histograms(used, args.plots)
    if measured is not None:
        paths.append(plot_framing_histograms(measured, Path(args.plots) / "framing.png"))
    print(inside_line(section))
    print(f"analyze: wrote {args.metrics} and {len(paths)} histograms in {args.plots}")


if __name__ == "__main__":
    main()
