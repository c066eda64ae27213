"""Stage ``synth``: render the synthetic 300W_LP-like, AFLW2000-like and BIWI-format datasets.

Reads the ``seed``, ``workers`` and ``synth`` params; writes the three dataset folders, the metrics
(counts and pose percentiles), the contact sheet and, apart from the metrics, the timing (wall
and CPU time, rate). dvc.yaml's ``cmd`` names every path.
"""

from __future__ import annotations

import argparse

from headpose.errors import exit_on_error
from headpose.io.files import write_json
from headpose.params import load_params
from headpose.synth.biwi import generate_biwi
from headpose.synth.render import generate, write_contact_sheet


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--train-root", required=True, help="300W_LP-like output folder")
    parser.add_argument("--test-root", required=True, help="AFLW2000-like output folder")
    parser.add_argument("--biwi-root", required=True, help="BIWI-format output (hpdb) folder")
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    parser.add_argument("--contact-sheet", required=True, help="contact sheet PNG")
    parser.add_argument("--timing", required=True, help="timing JSON (not a DVC output)")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    params = load_params(args.params)
    settings = params.synth
    synthesis = generate(
        settings.as_dict(), params.seed, args.train_root, args.test_root, params.workers
    )
    biwi = generate_biwi(
        args.biwi_root,
        settings.biwi_sequences,
        settings.biwi_frames_per_sequence,
        params.seed,
        params.workers,
    )
    write_json(args.metrics, {**synthesis.metrics, "biwi": biwi})
    write_json(args.timing, synthesis.timing)
    write_contact_sheet(args.train_root, args.test_root, args.contact_sheet)
    metrics, timing = synthesis.metrics, synthesis.timing
    print(
        f"synth: {metrics['train_images']} training and {metrics['test_images']} test images "
        f"in {timing['wall_s']} s ({timing['images_per_s']} images/s, "
        f"{timing['cpu_ms_per_image']} CPU ms/image, {timing['workers']} workers; {args.timing}); "
        f"{biwi['frames']} BIWI-format frames in {args.biwi_root}"
    )


if __name__ == "__main__":
    main()
