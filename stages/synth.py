"""Stage ``synth``: render the synthetic 300W_LP-like and AFLW2000-like datasets.

Writes ``data/synth/300W_LP/``, ``data/synth/AFLW2000/``, ``metrics/synth.json`` and
``plots/synth_contact_sheet.png`` from the ``seed``, ``workers`` and ``synth`` params.
"""

from __future__ import annotations

from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params
from headpose.synth.render import generate, write_contact_sheet

TRAIN_ROOT = "data/synth/300W_LP"
TEST_ROOT = "data/synth/AFLW2000"
METRICS_PATH = "metrics/synth.json"
CONTACT_SHEET_PATH = "plots/synth_contact_sheet.png"


@exit_on_error
def main() -> None:
    params = load_params()
    metrics = generate(params["synth"], params["seed"], TRAIN_ROOT, TEST_ROOT, params["workers"])
    write_json(METRICS_PATH, metrics)
    write_contact_sheet(TRAIN_ROOT, TEST_ROOT, CONTACT_SHEET_PATH)
    print(
        f"synth: {metrics['train_images']} training and {metrics['test_images']} test images "
        f"in {metrics['wall_s']} s ({metrics['images_per_s']} images/s)"
    )


if __name__ == "__main__":
    main()
