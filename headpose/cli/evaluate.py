"""``headpose evaluate``: its arguments, and the call into :mod:`headpose.evaluation.evaluate`
(or, with ``--framing-sweep``, into :mod:`headpose.evaluation.framing_sweep`).

The head options of the table (``--expectation``, ``--bin-width``: an original HopeNet snapshot
is evaluated as published, bin width 3 and lower edges) become one head, built here from the
checkpoint's (:func:`evaluation_head`) and passed to the evaluation as a value."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from headpose.app.detect import face_box_finder
from headpose.cli.predict import add_model_value_options
from headpose.crops.protocols import (
    DEFAULT_PROTOCOL,
    choose_protocol,
    get_protocol,
    protocol_names,
)
from headpose.datasets.biwi import DETECTOR_FRAME_LIST
from headpose.datasets.registry import Sample
from headpose.deploy.loading import load_model
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import (
    evaluate,
    evaluation_timing,
    format_report,
    other_protocols,
)
from headpose.evaluation.framing_sweep import (
    DEFAULT_SCALES,
    DEFAULT_SHIFTS,
    MAX_SHIFT,
    FramingSweep,
    format_framing_sweep,
    framing_sweep,
)
from headpose.evaluation.test_sets import evaluation_samples
from headpose.inference.loading import is_onnx_file
from headpose.io.files import write_json
from headpose.models.checkpoints import checkpoint_head
from headpose.models.heads import Head, head_with
from headpose.params import AT_LEAST_ONE, SCHEMA, option
from headpose.plots import plot_framing_sweep

# Head options of the table: attribute -> the key of the head's checkpoint meta it sets or checks.
HEAD_OPTIONS = {"expectation": "expectation", "bin_width": "bin_width"}
# Options only --framing-sweep reads, and the table's options a sweep refuses (attribute: flag).
SWEEP_OPTIONS = {
    "scales": "--scales",
    "shifts": "--shifts",
    "json": "--json",
    "plot": "--plot",
}
NOT_WITH_SWEEP = {
    "expectation": "--expectation",
    "bin_width": "--bin-width",
    "crop_protocol": "--crop-protocol",
    "compare_protocols": "--compare-protocols",
    "baseline": "--baseline",
}


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


SCALE_LIST = number_list(lambda scale: scale > 0, "comma-separated positive numbers, e.g. 1,1.5,2")
SHIFT_LIST = number_list(
    lambda shift: 0 <= shift <= MAX_SHIFT, f"comma-separated numbers from 0 to {MAX_SHIFT}"
)


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    """``headpose evaluate CHECKPOINT --data FOLDER_OR_LIST [options]``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="MAE of a model (a checkpoint, an original HopeNet .pkl, an .onnx) on a test set",
        description="Evaluate a checkpoint on a dataset of any registered format (an AFLW2000 "
        "folder, a BIWI hpdb folder, an FSA-Net .npz; scanned and filtered by --max-angle as the "
        "filelists stage does) or a sample list, and print the table of "
        "the evaluate stage. Defaults for the options come from the checkpoint; an original "
        "HopeNet snapshot is evaluated as published (bin width 3, lower_edges, 224 px).",
    )
    parser.add_argument(
        "checkpoint",
        help="a models/*.pt checkpoint, a HopeNet .pkl snapshot or an exported .onnx model",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="a dataset (AFLW2000 folder, BIWI hpdb folder, FSA-Net .npz) or a sample list",
    )
    parser.add_argument(
        "--frame-list",
        help="BIWI only: the frames and face boxes to take (e.g. Biwi_FSA-Net.npz, protocol 1), "
        "or detector (boxes from the face detector)",
    )
    parser.add_argument(
        "--detector-model", help="with --frame-list detector: a local YuNet .onnx file"
    )
    parser.add_argument(
        "--expectation", choices=("centers", "lower_edges"), help="bins head only: its mode"
    )
    parser.add_argument(
        "--bin-width", type=option(AT_LEAST_ONE), help="bins head only: must match its bins"
    )
    parser.add_argument(
        "--image-size", type=option(SCHEMA["image_size"]), help="input size in pixels"
    )
    parser.add_argument(
        "--max-angle", type=option(SCHEMA["max_angle"]), default=99, help="folder filter (deg)"
    )
    parser.add_argument(
        "--crop-protocol",
        choices=protocol_names(),
        help=f"how test faces are cropped (default: {DEFAULT_PROTOCOL}, the published protocol)",
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
    add_model_value_options(parser, image_size=False)
    sweep = parser.add_argument_group(
        "framing sweep",
        "MAE when faces are framed looser, tighter or off centre: every scale of the visible "
        "protocol's evaluation crop (1.0), with the face centred and moved by each shift right, "
        "left, down and up; the table also says where the published crop frames the faces",
    )
    sweep.add_argument(
        "--framing-sweep", action="store_true", help="run the framing sweep instead of the table"
    )
    sweep.add_argument(
        "--scales",
        type=SCALE_LIST,
        help="crop sides as multiples of the visible crop's; 1 is always measured (default: "
        f"{','.join(f'{scale:g}' for scale in DEFAULT_SCALES)})",
    )
    sweep.add_argument(
        "--shifts",
        type=SHIFT_LIST,
        help="face shifts in crop sides, 0 to 0.5; 0 is always measured (default: "
        f"{','.join(f'{shift:g}' for shift in DEFAULT_SHIFTS)})",
    )
    sweep.add_argument("--json", help="also write the sweep's rows as JSON to this file")
    sweep.add_argument("--plot", help="also draw MAE against scale as a PNG at this path")
    parser.set_defaults(run=lambda args: run_evaluate_command(args, parser))


def check_sweep_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (argparse's one error line) sweep options without ``--framing-sweep`` and the
    table's options with it."""
    if args.framing_sweep:
        given = [flag for name, flag in NOT_WITH_SWEEP.items() if getattr(args, name)]
        if given:
            parser.error(f"{given[0]} does not apply to --framing-sweep")
    else:
        given = [flag for name, flag in SWEEP_OPTIONS.items() if getattr(args, name) is not None]
        if given:
            parser.error(f"{given[0]} needs --framing-sweep")


def run_evaluate_command(
    args: argparse.Namespace, parser: argparse.ArgumentParser | None = None
) -> None:
    """``headpose evaluate``: scan or read the test set, evaluate, time, print the table (or, with
    ``--framing-sweep``, run the framing sweep)."""
    if parser is not None:
        check_sweep_options(parser, args)
    head = None if args.framing_sweep else evaluation_head(args)
    detect = (
        face_box_finder(args.detector_model) if args.frame_list == DETECTOR_FRAME_LIST else None
    )
    samples, skipped = evaluation_samples(args.data, args.max_angle, args.frame_list, detect)
    for entry, reason in skipped:
        print(f"skipped {entry}: {reason}", file=sys.stderr)
    if args.framing_sweep:
        run_framing_sweep(args, samples)
        return
    given = args.crop_protocol
    crop_protocol = choose_protocol(given and get_protocol(given, "--crop-protocol"))
    result = evaluate(
        args.checkpoint,
        samples,
        args.data,
        head=head,
        image_size=args.image_size,
        baseline=args.baseline,
        crop_protocol=crop_protocol,
        other_protocols=other_protocols(crop_protocol) if args.compare_protocols else (),
        workers=args.workers,
        mean=args.mean,
        std=args.std,
    )
    speed = evaluation_timing(result)
    print(format_report(result.metrics, args.checkpoint, args.data, speed, len(skipped)))


def evaluation_head(args: argparse.Namespace) -> Head | None:
    """The head the table reads the checkpoint's outputs with: the checkpoint's own, its options
    among the head options given replaced and the others checked
    (:func:`headpose.models.heads.head_with`); None when none is given."""
    given = {name: getattr(args, name) for name in HEAD_OPTIONS}
    settings = {HEAD_OPTIONS[name]: value for name, value in given.items() if value is not None}
    if not settings:
        return None
    if is_onnx_file(args.checkpoint):
        flags = ", ".join(NOT_WITH_SWEEP[name] for name in given if given[name] is not None)
        raise HeadposeError(
            f"{args.checkpoint}: {flags} applies to checkpoints; an .onnx model computes its "
            "head's angles in its graph"
        )
    source = f"checkpoint {args.checkpoint}"
    return head_with(checkpoint_head(args.checkpoint), settings, source)


def run_framing_sweep(args: argparse.Namespace, samples: list[Sample]) -> FramingSweep:
    """``headpose evaluate MODEL --framing-sweep``: load a checkpoint or an .onnx model (through
    :func:`headpose.deploy.loading.load_model`, as the Python API does), sweep, print the table,
    write the JSON and the plot when asked."""
    model = Path(args.checkpoint)
    loaded = load_model(model, "auto", image_size=args.image_size, mean=args.mean, std=args.std)
    image_size = loaded.description.image_size
    sweep = framing_sweep(
        loaded.predict,
        samples,
        image_size,
        loaded.description.normalization,
        DEFAULT_SCALES if args.scales is None else args.scales,
        DEFAULT_SHIFTS if args.shifts is None else args.shifts,
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
