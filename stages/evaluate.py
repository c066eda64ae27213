"""Stage ``evaluate``: score the final model on the test list (``evaluate``) or on one of the
``test_sets`` (``evaluate_set@<name>``: ``--data`` and ``--frame-list`` instead of
``--test-list``, the dataset scanned and filtered by ``max_angle`` as the filelists stage does).

Reads the final checkpoint (opened by :func:`headpose.inference.loading.open_model`; ``headpose
evaluate models/best.pt --data data/filelists/test.txt`` scores the best-by-validation one; the
checkpoint holds the training-set mean angles for the baseline) and the test list; uses the
``crop_protocol`` and ``workers`` params. The metrics' main figures are under ``crop_protocol``
(default the published ``hopenet``), the other protocol's beside them (``other_protocols``),
measured on the same model. Writes the metrics, the per-image CSV and the
``{yaw,pitch,roll}_error.png`` plots (main protocol), and prints the table; the model's speed goes
to the timing file (not a DVC output: it varies from run to run). All four outputs are written first
and moved into place together, so a failure replaces none. The metrics record the SHA-256 of the
test list (its sample names, in order) as ``test_list.sha256``: ``headpose compare`` refuses to set
runs of different test lists against each other.
"""

from __future__ import annotations

import argparse
import hashlib
import sys

from headpose.app.detect import face_box_finder
from headpose.crops.protocols import protocol_from_params
from headpose.datasets.biwi import DETECTOR_FRAME_LIST
from headpose.datasets.registry import Sample, read_samples
from headpose.errors import exit_on_error
from headpose.evaluation.evaluate import (
    evaluate,
    evaluation_timing,
    format_report,
    other_protocols,
    write_per_image_csv,
)
from headpose.evaluation.test_sets import evaluation_samples
from headpose.inference.loading import open_model
from headpose.io.files import atomic_outputs, write_json
from headpose.params import load_params
from headpose.plots import plot_errors_vs_angle
from headpose.registry import load_plugins


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--checkpoint", required=True, help="the model to score")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--test-list", help="test sample list")
    source.add_argument("--data", help="a test set of any dataset format (test_sets.<name>.data)")
    parser.add_argument(
        "--frame-list", default="none", help="BIWI frame list, none, or detector (face boxes)"
    )
    parser.add_argument(
        "--detector-model",
        help="with --frame-list detector: a local YuNet model file instead of the cached download",
    )
    parser.add_argument("--metrics", required=True, help="metrics JSON")
    parser.add_argument("--per-image", required=True, help="per-image CSV")
    parser.add_argument("--plots", required=True, help="folder of the error plots")
    parser.add_argument("--timing", required=True, help="timing JSON (not a DVC output)")
    return parser.parse_args(argv)


def list_sha256(samples: list[Sample]) -> str:
    """The SHA-256 of a sample list's entries, one per line, in order."""
    text = "".join(sample.entry + "\n" for sample in samples)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    params = load_params(args.params)
    load_plugins(params.plugins)  # before anything is looked up
    skipped: list = []
    if args.data:
        frame_list = None if args.frame_list == "none" else args.frame_list
        detect = None
        if frame_list == DETECTOR_FRAME_LIST:
            detect = face_box_finder(args.detector_model)
        samples, skipped = evaluation_samples(args.data, params.max_angle, frame_list, detect)
        source = args.data
        print(f"{args.data}: {len(samples)} samples, {len(skipped)} skipped", file=sys.stderr)
    else:
        samples, source = read_samples(args.test_list), args.test_list
    protocol = protocol_from_params(params.crop_protocol)
    result = evaluate(
        open_model(args.checkpoint),
        samples,
        source,
        baseline=True,
        crop_protocol=protocol,
        other_protocols=other_protocols(protocol),
        workers=params.workers,
    )
    speed = evaluation_timing(result)
    outputs = (args.metrics, args.per_image, args.plots, args.timing)
    with atomic_outputs(*outputs) as (metrics, per_image, plots, timing):
        listed = {"test_list": {"sha256": list_sha256(samples)}}
        write_json(
            metrics,
            {**result.metrics, **listed, **({"skipped": len(skipped)} if args.data else {})},
        )
        write_per_image_csv(per_image, result.errors)
        plot_errors_vs_angle(result.errors.true_deg, result.errors.absolute_deg, plots)
        write_json(timing, speed)
    print(format_report(result.metrics, args.checkpoint, source, speed))
    print(f"(speed also in {args.timing})")


if __name__ == "__main__":
    main()
