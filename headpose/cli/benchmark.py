"""``headpose benchmark``: its arguments, and the call into :mod:`headpose.deploy.benchmark`."""

from __future__ import annotations

import argparse
import os

from headpose.cli.predict import chosen_protocol
from headpose.crops.protocols import DEFAULT_PROTOCOL, protocol_names
from headpose.deploy.benchmark import DEFAULT_ARCHS, checkpoint_rows, format_table, run_benchmark
from headpose.io.files import write_json
from headpose.models.heads import DEFAULT_HEAD, head_names
from headpose.params import AT_LEAST_ONE, SCHEMA, option


def run_benchmark_command(args: argparse.Namespace) -> None:
    """``headpose benchmark``: the trained checkpoints' rows, then the untrained archs."""
    checkpoints = checkpoint_rows(args.checkpoints, args.image_size)
    listed = DEFAULT_ARCHS if args.archs is None else args.archs  # `--archs` alone: none extra
    archs = list(dict.fromkeys([*checkpoints, *listed]))
    report = run_benchmark(
        archs,
        checkpoints,
        args.threads,
        args.head,
        args.image_size,
        args.test_list,
        args.calibration_list,
        args.runs,
        chosen_protocol(args.crop_protocol),
    )
    print(format_table(report))
    if args.out:
        write_json(args.out, report)


def add_benchmark_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="size, MAE and speed of backbones in PyTorch, ONNX fp32 and int8"
    )
    parser.add_argument(
        "--archs",
        nargs="*",
        help=f"untrained backbones, any arch or timm/<name> (default: {' '.join(DEFAULT_ARCHS)})",
    )
    parser.add_argument(
        "--head", choices=head_names(), default=DEFAULT_HEAD, help="head of the untrained backbones"
    )
    parser.add_argument("--checkpoints", nargs="*", default=[], help="trained checkpoints")
    parser.add_argument(
        "--image-size",
        type=option(SCHEMA["image_size"]),
        help="input px (default: checkpoint's, or 224)",
    )
    parser.add_argument("--test-list", help="sample list for MAE (trained checkpoints only)")
    parser.add_argument("--calibration-list", help="training list for int8 calibration")
    parser.add_argument(
        "--crop-protocol",
        choices=protocol_names(),
        help="how test and calibration faces are cropped (default: the published "
        f"{DEFAULT_PROTOCOL})",
    )
    parser.add_argument(
        "--threads", type=option(AT_LEAST_ONE), default=os.cpu_count(), help="CPU threads"
    )
    parser.add_argument(
        "--runs", type=option(AT_LEAST_ONE), default=20, help="timed runs at batch 1"
    )
    parser.add_argument("--out", help="write the report as JSON (e.g. metrics/benchmark.json)")
    parser.set_defaults(run=run_benchmark_command)
