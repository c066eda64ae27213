"""Stage ``analyze``: angle distributions of train, 300W_AUG and test.

Reads the list folder of the filelists stage and the 300W_AUG folder; writes the metrics
(percentile tables) and the overlaid histograms ``{yaw,pitch,roll}.png`` of the samples used.
"""

from __future__ import annotations

import argparse

from headpose.datasets.analyze import dataset_angles, distributions
from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.plots import plot_angle_histograms


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filelists", required=True, help="the filelists stage's folder")
    parser.add_argument("--augmented", required=True, help="the augment stage's folder")
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    parser.add_argument("--plots", required=True, help="folder of the histograms")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    angles = dataset_angles(args.filelists, args.augmented)
    write_json(args.metrics, distributions(angles))
    used = {dataset: subsets["used"] for dataset, subsets in angles.items()}
    paths = plot_angle_histograms(used, args.plots)
    print(f"analyze: wrote {args.metrics} and {len(paths)} histograms in {args.plots}")


if __name__ == "__main__":
    main()
