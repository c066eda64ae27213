"""``headpose evaluate``: its arguments, and the call into :mod:`headpose.evaluation.evaluate`
(one model) or :mod:`headpose.app.model_report` (several).

Each model is opened here, once, by the one opener (:func:`headpose.inference.loading.open_model`,
:func:`open_evaluated_model`), every model given before any is scored: one that fails to open is
one line naming it, and nothing is written. One model prints the table of the evaluate stage;
several print one table, model x crop x metric (:func:`headpose.app.model_report.score_models`).
The head options of the table (``--expectation``, ``--bin-width``: an original HopeNet snapshot
is evaluated as published, bin width 3 and lower edges) become one head, built here from the
opened checkpoint's (:func:`evaluation_head`) and passed to the evaluation with the model. The
framing sweep is its own command, ``headpose sweep`` (:mod:`headpose.cli.sweep`)."""

from __future__ import annotations

import argparse
import sys

from headpose.app.api import build_detector
from headpose.app.detect import DEFAULT_DETECTOR, DETECTORS, face_box_finder
from headpose.app.model_report import (
    ModelReport,
    ReportModel,
    evaluation_rows,
    format_model_report,
    model_labels,
    score_models,
)
from headpose.cli.predict import add_model_value_options, chosen_protocol
from headpose.crops.protocols import (
    DEFAULT_PROTOCOL,
    CropProtocol,
    choose_protocol,
    protocol_names,
)
from headpose.datasets.biwi import DETECTOR_FRAME_LIST
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import (
    evaluate,
    evaluation_timing,
    format_report,
    other_protocols,
)
from headpose.evaluation.test_sets import evaluation_samples
from headpose.inference.loading import LoadedModel, open_model
from headpose.io.files import write_json
from headpose.models.heads import Head, head_with
from headpose.params import AT_LEAST_ONE, SCHEMA, option

# Head options of the table: attribute -> the key of the head's checkpoint meta it sets or checks.
HEAD_OPTIONS = {"expectation": "expectation", "bin_width": "bin_width"}


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    """``headpose evaluate MODEL [MODEL ...] --data FOLDER_OR_LIST [options]``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="MAE, geodesic error and MAEV of one or several models (checkpoints, original "
        "HopeNet .pkl files, .onnx files, published models by name) on a test set",
        description="Evaluate a checkpoint on a dataset of any registered format (an AFLW2000 "
        "folder, a BIWI hpdb folder, an FSA-Net .npz; scanned and filtered by --max-angle as the "
        "filelists stage does) or a sample list, and print the table of "
        "the evaluate stage. Defaults for the options come from the checkpoint; an original "
        "HopeNet snapshot is evaluated as published (bin width 3, lower_edges, 224 px). Several "
        "models are scored on the same samples, each at its own input size and normalisation, "
        "under the published crop, the tight crop, each model's own crop and the crop predict "
        "makes from the detector's box, in one table (model x crop x metric).",
    )
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="a models/*.pt checkpoint, a HopeNet .pkl snapshot, an .onnx model (--card to "
        "describe one made elsewhere) or a published model's name (fsanet); several: one table "
        "of all",
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
        "--detector-model",
        help="with --frame-list detector or several models: a local YuNet .onnx file",
    )
    parser.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        choices=list(DETECTORS),
        help="several models: the face detector of the detector crop (as headpose predict's)",
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
        help=f"how test faces are cropped (default: {DEFAULT_PROTOCOL}, the published protocol; "
        "several models: one more crop row)",
    )
    parser.add_argument(
        "--compare-protocols",
        action="store_true",
        help="one model: also show the MAE under the other crop protocol (what the crop alone "
        "moves); several models are scored under every crop",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="one model: also show the MAE of the training-mean angles stored in the checkpoint",
    )
    parser.add_argument(
        "--json", help="also write one row per model x crop (its metrics) as JSON to this file"
    )
    parser.add_argument(
        "--workers", type=option(SCHEMA["workers"]), default=0, help="decode processes (0: all)"
    )
    add_model_value_options(parser, image_size=False)
    parser.set_defaults(run=run_evaluate_command)


def run_evaluate_command(args: argparse.Namespace) -> None:
    """``headpose evaluate``: scan or read the test set, open every model (before any is
    scored), evaluate (one model: and time), print the table, write the JSON when asked."""
    several = len(args.models) > 1
    if several:
        for flag in ("baseline", "compare_protocols"):
            if getattr(args, flag):
                raise HeadposeError(
                    f"--{flag.replace('_', '-')} applies to one model; several models are "
                    "scored under every crop, without the baseline"
                )
    given = chosen_protocol(args.crop_protocol)
    protocol = choose_protocol(given)
    labels = model_labels(args.models)
    detect = (
        face_box_finder(args.detector_model) if args.frame_list == DETECTOR_FRAME_LIST else None
    )
    samples, skipped = evaluation_samples(args.data, args.max_angle, args.frame_list, detect)
    for entry, reason in skipped:
        print(f"skipped {entry}: {reason}", file=sys.stderr)
    models = [
        ReportModel(label, open_evaluated_model(path, args, protocol))
        for label, path in zip(labels, args.models, strict=True)
    ]
    if several:
        detector = build_detector(None, args.detector, args.detector_model)
        report, missed = score_models(
            models, samples, args.data, detector=detector, given=given, workers=args.workers
        )
        for entry, reason in missed:
            print(f"detector crop left out {entry}: {reason}", file=sys.stderr)
        print(format_model_report(report))
        if args.json:
            write_json(args.json, report.to_json())
        return
    (model,) = models
    result = evaluate(
        model.loaded,
        samples,
        args.data,
        baseline=args.baseline,
        crop_protocol=protocol,
        other_protocols=other_protocols(protocol) if args.compare_protocols else (),
        workers=args.workers,
    )
    speed = evaluation_timing(result)
    print(format_report(result.metrics, args.models[0], args.data, speed, len(skipped)))
    if args.json:
        rows = evaluation_rows(model.label, model.loaded, result.metrics, given)
        metrics = result.metrics
        report = ModelReport(args.data, metrics["count"], metrics["real_aflw2000"], rows)
        write_json(args.json, report.to_json())


def open_evaluated_model(
    path: str, args: argparse.Namespace, protocol: CropProtocol
) -> LoadedModel:
    """One model as ``headpose evaluate`` scores it: opened by the one opener with the model
    value options (an ``.onnx`` exported elsewhere is cut by ``protocol``, the test set's crop),
    its outputs read with the head options given (:func:`evaluation_head`)."""
    described = args.mean is not None or args.std is not None  # an .onnx exported elsewhere
    loaded = open_model(
        path,
        image_size=args.image_size,
        mean=args.mean,
        std=args.std,
        crop_protocol=protocol if described else None,  # its crop: the one the set is cut by
        card=args.card,
    )
    head = evaluation_head(args, loaded)
    return loaded if head is None else loaded.with_head(head)


def evaluation_head(args: argparse.Namespace, loaded: LoadedModel) -> Head | None:
    """The head the table reads the checkpoint's outputs with: the checkpoint's own, its options
    among the head options given replaced and the others checked
    (:func:`headpose.models.heads.head_with`); None when none is given."""
    given = [name for name in HEAD_OPTIONS if getattr(args, name) is not None]
    if not given:
        return None
    if loaded.model is None:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise HeadposeError(
            f"{loaded.path}: {flags} applies to checkpoints; an .onnx model computes its "
            "head's angles in its graph"
        )
    settings = {HEAD_OPTIONS[name]: getattr(args, name) for name in given}
    return head_with(loaded.model.network.head, settings, f"checkpoint {loaded.path}")
