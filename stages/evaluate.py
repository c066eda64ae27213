"""Stage ``evaluate``: score the final model on the test list.

Reads ``models/model.pt`` (the model after the last epoch; ``headpose evaluate models/best.pt
--data data/filelists/test.txt`` scores the best-by-validation one), ``data/filelists/test.txt``
and, for the training-mean baseline, the training angles in ``data/filelists`` and
``data/300W_AUG``; uses the ``workers`` key. Writes ``metrics/evaluation.json``,
``data/evaluation/per_image.csv`` and ``plots/evaluation/{yaw,pitch,roll}_error.png``, and prints
the table.
"""

from __future__ import annotations

from headpose.errors import exit_on_error
from headpose.evaluation.evaluate import (
    evaluate,
    format_report,
    training_mean_deg,
    write_per_image_csv,
)
from headpose.io.files import write_json
from headpose.io.formats import read_list
from headpose.params import load_params
from headpose.plots import plot_errors_vs_angle

CHECKPOINT = "models/model.pt"
FILELISTS_FOLDER = "data/filelists"
AUGMENTED_FOLDER = "data/300W_AUG"
TEST_LIST = f"{FILELISTS_FOLDER}/test.txt"
METRICS_FILE = "metrics/evaluation.json"
PER_IMAGE_FILE = "data/evaluation/per_image.csv"
PLOTS_FOLDER = "plots/evaluation"


@exit_on_error
def main() -> None:
    params = load_params()
    result = evaluate(
        CHECKPOINT,
        read_list(TEST_LIST),
        TEST_LIST,
        training_mean=training_mean_deg(FILELISTS_FOLDER, AUGMENTED_FOLDER),
        workers=params["workers"],
    )
    write_json(METRICS_FILE, result.metrics)
    write_per_image_csv(PER_IMAGE_FILE, result.errors)
    plot_errors_vs_angle(result.errors.true_deg, result.errors.absolute_deg, PLOTS_FOLDER)
    print(format_report(result.metrics, CHECKPOINT, TEST_LIST))


if __name__ == "__main__":
    main()
