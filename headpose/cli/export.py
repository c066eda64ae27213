"""``headpose export``: its arguments and messages, around
:func:`headpose.deploy.export.export_file`."""

from __future__ import annotations

import argparse

from headpose.crops.protocols import trained_protocol
from headpose.deploy.export import EXPORT_FORMATS, INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, export_file


def run_export_command(args: argparse.Namespace) -> None:
    """``headpose export``: write the file, then say what it holds and how to feed it."""
    meta, parity = export_file(args.checkpoint, args.out, args.format)
    if parity is not None:
        print(
            f"wrote {args.out} (ONNX opset {ONNX_OPSET}); max |torch - onnxruntime| = "
            f"{parity:.2e} deg on random inputs"
        )
    else:
        print(f"wrote {args.out} (TorchScript)")
    print(
        f"input {INPUT_NAME!r}: float (N, 3, {meta['image_size']}, {meta['image_size']}) RGB "
        f"crops, (x / 255 - mean) / std with mean {meta['mean']}, std {meta['std']}; output "
        f"{OUTPUT_NAME!r}: (N, 3) yaw, pitch, roll in degrees"
    )
    if parity is not None:
        print(
            "the file's metadata (headpose.* keys) records them, the crop protocol "
            f"{trained_protocol(meta)}, the head and the training fingerprint: headpose.load, "
            "headpose predict and evaluate read it"
        )


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a checkpoint to ONNX or TorchScript")
    parser.add_argument("checkpoint", help="model checkpoint (.pt)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    parser.set_defaults(run=run_export_command)
