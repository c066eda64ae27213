"""``headpose sweep``: its arguments, and the call into :mod:`headpose.evaluation.framing_sweep`.

``headpose sweep MODEL --data X`` opens a checkpoint or an ``.onnx`` model by the one opener
(:func:`headpose.inference.loading.open_model`, as the Python API does), measures its MAE on the
test set as faces are framed looser, tighter or off centre, prints the table, and writes the
rows as JSON and the curves as a PNG when asked. The test set is read once and each model of the
parsed list is swept by :func:`sweep_model`; the list holds one model for now (sweeping several
into one plot is a change of ``nargs`` and of the outputs' layout).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from headpose.cli.predict import add_model_value_options
from headpose.datasets.registry import Sample
from headpose.evaluation.framing_sweep import (
    DEFAULT_SCALES,
    DEFAULT_SHIFTS,
    MAX_SHIFT,
    SCALE_EXPECTED,
    FramingSweep,
    format_framing_sweep,
    framing_sweep,
    scale_in_range,
)
from headpose.evaluation.test_sets import evaluation_samples
from headpose.inference.loading import open_model
from headpose.io.files import write_json
from headpose.params import SCHEMA, option
from headpose.plots import plot_framing_sweep


def number_list(check: Callable[[float], bool], expected: str) -> Callable[[str], list[float]]:
    """An argparse ``type`` for a comma-separated list of numbers that each pass ``check``: a bad
    value is argparse's one error line naming the option."""

    def convert(text: str) -> list[float]:
        try:
            values = [float(item) for item in text.split(",")]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(value) and check(value) for value in values):
            raise argparse.ArgumentTypeError(f"{text!r}; expected {expected}")
        return values

    return convert


SCALE_LIST = number_list(scale_in_range, f"comma-separated numbers, each {SCALE_EXPECTED}")
SHIFT_LIST = number_list(
    lambda shift: 0 <= shift <= MAX_SHIFT, f"comma-separated numbers from 0 to {MAX_SHIFT}"
)


def add_sweep_command(subparsers: argparse._SubParsersAction) -> None:
    """``headpose sweep MODEL --data FOLDER_OR_LIST [options]``."""
    parser = subparsers.add_parser(
        "sweep",
        help="MAE of a model as faces are framed looser, tighter or off centre",
        description="The framing sweep: a model's MAE on a test set at every scale of the "
        "visible protocol's evaluation crop (1.0), with the face centred and moved by each shift "
        "right, left, down and up; the table also says where the published crop frames the "
        "faces. The test set is scanned and filtered by --max-angle as by headpose evaluate.",
    )
    parser.add_argument(
        "models",
        nargs=1,
        metavar="MODEL",
        help="a models/*.pt checkpoint, a HopeNet .pkl snapshot or an exported .onnx model",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="a dataset with landmarks (an AFLW2000-like folder) or a sample list",
    )
    parser.add_argument(
        "--max-angle", type=option(SCHEMA["max_angle"]), default=99, help="folder filter (deg)"
    )
    parser.add_argument(
        "--scales",
        type=SCALE_LIST,
        default=list(DEFAULT_SCALES),
        help=f"crop sides as multiples of the visible crop's, each {SCALE_EXPECTED}; 1 is always "
        "measured (default: "
        f"{','.join(f'{scale:g}' for scale in DEFAULT_SCALES)})",
    )
    parser.add_argument(
        "--shifts",
        type=SHIFT_LIST,
        default=list(DEFAULT_SHIFTS),
        help="face shifts in crop sides, 0 to 0.5; 0 is always measured (default: "
        f"{','.join(f'{shift:g}' for shift in DEFAULT_SHIFTS)})",
    )
    parser.add_argument(
        "--json",
        help="also write the sweep's rows (MAE, mean geodesic error and MAEV per condition) as "
        "JSON to this file",
    )
    parser.add_argument("--plot", help="also draw MAE against scale as a PNG at this path")
    add_model_value_options(parser)
    parser.set_defaults(run=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> None:
    """``headpose sweep``: read the test set once, then sweep each model given."""
    samples, skipped = evaluation_samples(args.data, args.max_angle)
    for entry, reason in skipped:
        print(f"skipped {entry}: {reason}", file=sys.stderr)
    for model in args.models:
        sweep_model(Path(model), samples, args)


def sweep_model(model: Path, samples: list[Sample], args: argparse.Namespace) -> FramingSweep:
    """Open ``model``, sweep it over ``samples``, print the table, write the JSON and the plot when
    asked."""
    loaded = open_model(
        model, image_size=args.image_size, mean=args.mean, std=args.std, card=args.card
    )
    image_size = loaded.description.image_size
    sweep = framing_sweep(
        loaded.predict,
        samples,
        image_size,
        loaded.description.normalization,
        args.scales,
        args.shifts,
        device=loaded.device,
    )
    trained = f"trained on the {loaded.description.crop_protocol} crop"
    print(f"{model}: {image_size} px, runs on {loaded.runs_on}, {trained}")
    print(f"test set {args.data}")
    print(format_framing_sweep(sweep))
    if args.json:
        write_json(args.json, {"model": str(model), "data": str(args.data), **sweep.to_json()})
    if args.plot:
        curves = {"face centred": [sweep.mean_mae(scale) for scale in sweep.scales]}
        for shift in sweep.shifts:
            curves[f"face moved {shift:g} (mean of 4 directions)"] = [
                sweep.mean_mae(scale, shift) for scale in sweep.scales
            ]
        plot_framing_sweep(
            np.array(sweep.scales),
            curves,
            sweep.published_crop_scale,
            args.plot,
            title=f"{model.name} on {Path(args.data).name}: MAE against framing "
            f"({sweep.samples} samples)",
        )
    return sweep
