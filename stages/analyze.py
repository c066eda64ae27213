"""Stage ``analyze``: angle distributions of train, 300W_AUG and test.

Reads ``data/filelists/`` and ``data/300W_AUG/``; writes ``metrics/distributions.json`` and the
overlaid histograms ``plots/distributions/{yaw,pitch,roll}.png`` (of the samples used).
"""

from __future__ import annotations

from headpose.datasets.analyze import dataset_angles, distributions
from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.plots import plot_angle_histograms

FILELISTS_FOLDER = "data/filelists"
AUGMENTED_FOLDER = "data/300W_AUG"
METRICS_FILE = "metrics/distributions.json"
PLOTS_FOLDER = "plots/distributions"


@exit_on_error
def main() -> None:
    angles = dataset_angles(FILELISTS_FOLDER, AUGMENTED_FOLDER)
    write_json(METRICS_FILE, distributions(angles))
    used = {dataset: subsets["used"] for dataset, subsets in angles.items()}
    paths = plot_angle_histograms(used, PLOTS_FOLDER)
    print(f"analyze: wrote {METRICS_FILE} and {len(paths)} histograms in {PLOTS_FOLDER}")


if __name__ == "__main__":
    main()
