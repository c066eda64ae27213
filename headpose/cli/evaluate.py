"""``headpose evaluate``: its arguments, and the call into :mod:`headpose.evaluation.evaluate`."""

from __future__ import annotations

import argparse
import sys

from headpose.data.crop import CROP_PROTOCOLS, PUBLISHED_CROP_PROTOCOL
from headpose.evaluation.evaluate import (
    evaluate,
    evaluation_timing,
    format_report,
    other_protocols,
)
from headpose.evaluation.protocol import evaluation_stems
from headpose.params import AT_LEAST_ONE, SCHEMA, option


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    """``headpose evaluate CHECKPOINT --data FOLDER_OR_LIST [options]``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="MAE of a checkpoint (ours or an original HopeNet .pkl) on an AFLW2000-format set",
        description="Evaluate a checkpoint on an AFLW2000-format folder (scanned and filtered "
        "by --max-angle as the filelists stage does) or a sample list, and print the table of "
        "the evaluate stage. Defaults for the options come from the checkpoint; an original "
        "HopeNet snapshot is evaluated as published (bin width 3, lower_edges, 224 px).",
    )
    parser.add_argument("checkpoint", help="a models/*.pt checkpoint or a HopeNet .pkl snapshot")
    parser.add_argument("--data", required=True, help="AFLW2000-format folder or sample list")
    parser.add_argument("--expectation", choices=("centers", "lower_edges"), help="bins head only")
    parser.add_argument(
        "--bin-width", type=option(AT_LEAST_ONE), help="must match the checkpoint's bins"
    )
    parser.add_argument(
        "--image-size", type=option(SCHEMA["image_size"]), help="input size in pixels"
    )
    parser.add_argument(
        "--max-angle", type=option(SCHEMA["max_angle"]), default=99, help="folder filter (deg)"
    )
    parser.add_argument(
        "--crop-protocol",
        choices=CROP_PROTOCOLS,
        default=PUBLISHED_CROP_PROTOCOL,
        help="how test faces are cropped: hopenet (default, the published protocol) or visible",
    )
    parser.add_argument(
        "--compare-protocols",
        action="store_true",
        help="also show the MAE under the other crop protocol (what the crop alone moves)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also show the MAE of the training-mean angles stored in the checkpoint",
    )
    parser.add_argument(
        "--workers", type=option(SCHEMA["workers"]), default=0, help="decode processes (0: all)"
    )
    parser.set_defaults(run=run_evaluate_command)


def run_evaluate_command(args: argparse.Namespace) -> None:
    """``headpose evaluate``: scan or read the test set, evaluate, time, print the table."""
    stems, skipped = evaluation_stems(args.data, args.max_angle)
    for sample, reason in skipped:
        print(f"skipped {sample}: {reason}", file=sys.stderr)
    result = evaluate(
        args.checkpoint,
        stems,
        args.data,
        expectation=args.expectation,
        bin_width=args.bin_width,
        image_size=args.image_size,
        baseline=args.baseline,
        crop_protocol=args.crop_protocol,
        other_protocols=other_protocols(args.crop_protocol) if args.compare_protocols else (),
        workers=args.workers,
    )
    speed = evaluation_timing(result)
    print(format_report(result.metrics, args.checkpoint, args.data, speed, len(skipped)))
