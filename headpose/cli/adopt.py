"""``headpose adopt FILE.onnx --card CARD.yaml --out DESCRIBED.onnx``: its arguments, and the
call into :func:`headpose.inference.adopt.adopt`."""

from __future__ import annotations

import argparse

from headpose.inference.adopt import adopt


def add_adopt_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "adopt",
        help="write a model card into an .onnx file made elsewhere",
        description="Check a model card (docs/design.md, 'Model cards') against an .onnx file's "
        "graph and write the file with the card in its headpose.* metadata, so that predict, "
        "evaluate, sweep and headpose.load take it unchanged. Nothing is written when the card "
        "contradicts the graph.",
    )
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--card", required=True, help="the model card (YAML)")
    parser.add_argument("--out", required=True, help="the described .onnx file to write")
    parser.set_defaults(run=run_adopt_command)


def run_adopt_command(args: argparse.Namespace) -> None:
    """``headpose adopt``."""
    out = adopt(args.model, args.card, args.out)
    print(f"wrote {out}: {args.model} described by {args.card}")
