"""``headpose sweep``: its arguments, and the call into :mod:`headpose.evaluation.framing_sweep`.

``headpose sweep MODEL [MODEL ...] --data X`` opens each checkpoint or ``.onnx`` model by the one
opener (:func:`headpose.inference.loading.open_model`, as the Python API does; every model before
any is swept, so one that fails to open is one line naming it and nothing is written), measures
its MAE on the test set as faces are framed looser, tighter or off centre (each model at its own
input size and normalisation), prints the table of each, and writes the rows as JSON and the
curves as a PNG when asked. The test set is read once. One model: the plot holds its curves with
the face centred and moved; several: one curve per model (face centred, legend the model's name,
:func:`headpose.app.model_report.model_labels`). The JSON has one layout for one model or several:
``{"data": X, "models": [{"model", "label", "image_size", "samples", "published_crop_scale",
"rows"}, ...]}``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from headpose.app.model_report import model_labels
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
from headpose.inference.loading import LoadedModel, open_model
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
        nargs="+",
        metavar="MODEL",
        help="a models/*.pt checkpoint, a HopeNet .pkl snapshot or an exported .onnx model; "
        "several: one plot with a curve per model",
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
    parser.add_argument(
        "--plot",
        help="also draw MAE against scale as a PNG at this path (several models: a curve each)",
    )
    add_model_value_options(parser)
    parser.set_defaults(run=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> None:
    """``headpose sweep``: read the test set once, open every model, sweep each, then write the
    JSON (one layout for one model or several) and the plot."""
    labels = model_labels(args.models)
    samples, skipped = evaluation_samples(args.data, args.max_angle)
    for entry, reason in skipped:
        print(f"skipped {entry}: {reason}", file=sys.stderr)
    opened = [
        open_model(model, image_size=args.image_size, mean=args.mean, std=args.std, card=args.card)
        for model in args.models
    ]
    sweeps = {
        label: sweep_model(Path(model), samples, args, loaded)
        for label, model, loaded in zip(labels, args.models, opened, strict=True)
    }
    if args.json:
        models = [
            {"model": str(model), "label": label, **sweep.to_json()}
            for model, (label, sweep) in zip(args.models, sweeps.items(), strict=True)
        ]
        write_json(args.json, {"data": str(args.data), "models": models})
    if args.plot:
        plot_sweeps(Path(args.data), sweeps, args.plot)


def sweep_model(
    model: Path, samples: list[Sample], args: argparse.Namespace, loaded: LoadedModel
) -> FramingSweep:
    """Sweep the opened ``model`` over ``samples`` and print its table."""
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
    return sweep


def plot_sweeps(data: Path, sweeps: dict[str, FramingSweep], path: str) -> None:
    """One model: its curves with the face centred and moved by each shift; several: one curve
    per model, face centred. ``sweeps`` maps each model's label to its sweep."""
    label, first = next(iter(sweeps.items()))
    if len(sweeps) == 1:
        curves = {"face centred": [first.mean_mae(scale) for scale in first.scales]}
        for shift in first.shifts:
            curves[f"face moved {shift:g} (mean of 4 directions)"] = [
                first.mean_mae(scale, shift) for scale in first.scales
            ]
        title = f"{label} on {data.name}: MAE against framing ({first.samples} samples)"
    else:
        curves = {
            label: [sweep.mean_mae(scale) for scale in sweep.scales]
            for label, sweep in sweeps.items()
        }
        title = (
            f"{len(sweeps)} models on {data.name}: MAE against framing, face centred "
            f"({first.samples} samples)"
        )
    plot_framing_sweep(
        np.array(first.scales), curves, first.published_crop_scale, path, title=title
    )
