"""``headpose export``: its arguments and messages, around
:func:`headpose.deploy.export.export_file`."""

from __future__ import annotations

import argparse

from headpose.deploy.export import EXPORT_FORMATS, export_file
from headpose.inference.metadata import INPUT_NAME, OUTPUT_NAME
from headpose.inference.onnx_export import ONNX_OPSET


def run_export_command(args: argparse.Namespace) -> None:
    """``headpose export``: write the file, then say what it holds and how to feed it."""
    description, parity = export_file(args.checkpoint, args.out, args.format)
    if parity is not None:
        print(
            f"wrote {args.out} (ONNX opset {ONNX_OPSET}); max |torch - onnxruntime| = "
            f"{parity:.2e} deg on random inputs"
        )
    else:
        print(f"wrote {args.out} (TorchScript)")
    size, normalization = description.image_size, description.normalization
    print(
        f"input {INPUT_NAME!r}: float (N, 3, {size}, {size}) RGB crops, (x / 255 - mean) / std "
        f"with mean {list(normalization.mean)}, std {list(normalization.std)}; output "
        f"{OUTPUT_NAME!r}: (N, 3) yaw, pitch, roll in degrees"
    )
    if parity is not None:
        print(
            "the file's metadata (headpose.* keys) records them, the crop protocol "
            f"{description.crop_protocol}, the head and the training fingerprint: headpose.load, "
            "headpose predict and evaluate read it"
        )


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a checkpoint to ONNX or TorchScript")
    parser.add_argument("checkpoint", help="model checkpoint (.pt)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    parser.set_defaults(run=run_export_command)
