"""``headpose predict``: its arguments, and the call into :func:`headpose.app.predict.predict`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from headpose.app.detect import DEFAULT_DETECTOR, DETECTORS
from headpose.app.predict import DEFAULT_CHECKPOINT, predict
from headpose.crops.protocols import CropProtocol, get_protocol, protocol_names
from headpose.inference.loading import RUNTIMES
from headpose.params import AT_LEAST_ONE, FINITE_NUMBER, SCHEMA, option


def run_predict_command(args: argparse.Namespace) -> None:
    """``headpose predict``: exit status 1 when any input had a problem."""
    errors = predict(
        args.paths,
        Path(args.checkpoint),
        Path(args.out),
        runtime=args.runtime,
        detector=args.detector,
        detector_model=args.detector_model,
        min_score=args.min_score,
        boxes=args.boxes,
        batch_size=args.batch_size,
        max_frames=args.max_frames,
        device=args.device,
        crop_protocol=chosen_protocol(args.crop_protocol),
        mean=args.mean,
        std=args.std,
        image_size=args.image_size,
        card=args.card,
    )
    if errors:
        raise SystemExit(1)


def chosen_protocol(name: str | None) -> CropProtocol | None:
    """The crop protocol a ``--crop-protocol NAME`` option names, as the object (None when the
    option is not given): commands turn the name into the protocol here, once."""
    return None if name is None else get_protocol(name, "--crop-protocol")


def rgb_values(text: str) -> tuple[float, float, float]:
    """An argparse ``type``: three finite comma-separated numbers (R, G, B), e.g. 0.5,0.5,0.5."""
    try:
        values = tuple(float(item) for item in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(value) for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}; expected three numbers R,G,B")
    return values


def add_model_value_options(parser: argparse.ArgumentParser, image_size: bool = True) -> None:
    """The options that describe an ``.onnx`` model exported elsewhere (ours record them)."""
    parser.add_argument(
        "--card",
        help="a model card (YAML) saying how to feed the .onnx model and read its answer "
        "(docs/design.md, 'Model cards'); replaces the file's own metadata",
    )
    parser.add_argument(
        "--mean", type=rgb_values, help="R,G,B mean of x / 255 (only for an .onnx without metadata)"
    )
    parser.add_argument(
        "--std", type=rgb_values, help="R,G,B std of x / 255 (only for an .onnx without metadata)"
    )
    if image_size:
        parser.add_argument(
            "--image-size",
            type=option(SCHEMA["image_size"]),
            help="input px (default: the model's)",
        )


def add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict head poses on images, folders, videos and cameras"
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="image, folder or video files; 0, 1 ... a camera"
    )
    parser.add_argument(
        "--checkpoint",
        "--model",
        dest="checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help="model checkpoint (.pt), exported model (.onnx, e.g. deploy/model_int8.onnx) or a "
        f"published model's name (fsanet); default {DEFAULT_CHECKPOINT}, which `dvc repro` trains",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=RUNTIMES,
        help="auto: onnx for .onnx files, else torch; onnx on a .pt exports it first",
    )
    parser.add_argument(
        "--detector", default=DEFAULT_DETECTOR, choices=list(DETECTORS), help="face detector"
    )
    parser.add_argument(
        "--detector-model", help="local YuNet .onnx file instead of the cached download"
    )
    parser.add_argument(
        "--min-score",
        type=option(FINITE_NUMBER),
        help="drop faces the detector is less sure of (yunet: 0 to 1, default 0.6)",
    )
    parser.add_argument("--boxes", help="CSV/JSON of file[,frame],x0,y0,x1,y1 instead of detecting")
    parser.add_argument(
        "--batch-size", type=option(SCHEMA["batch_size"]), default=32, help="most faces per call"
    )
    parser.add_argument(
        "--max-frames", type=option(AT_LEAST_ONE), help="stop each video/camera after N frames"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument(
        "--crop-protocol",
        choices=protocol_names(),
        help="how faces are cropped (default: the one the model records)",
    )
    add_model_value_options(parser)
    parser.set_defaults(run=run_predict_command)
