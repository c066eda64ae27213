"""The ``headpose`` command: one sub-command per user-facing task.

Every command's arguments live in this package, one module per command (``evaluate``,
``sweep``, ``export``, ``benchmark``, ``predict``, ``compare``, ``adopt``): each adds its
sub-parser with an ``add_*_command(subparsers)`` function and turns the parsed options into a
call of typed library functions, which never parse argv themselves. The stage scripts
(``stages/``) parse only the paths dvc.yaml gives them.
"""

from __future__ import annotations

import argparse

from headpose.cli.adopt import add_adopt_command
from headpose.cli.benchmark import add_benchmark_command
from headpose.cli.compare import add_compare_command
from headpose.cli.evaluate import add_evaluate_command
from headpose.cli.export import add_export_command
from headpose.cli.predict import add_predict_command
from headpose.cli.sweep import add_sweep_command
from headpose.errors import exit_on_error

COMMANDS = (
    add_predict_command,
    add_export_command,
    add_benchmark_command,
    add_evaluate_command,
    add_sweep_command,
    add_compare_command,
    add_adopt_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headpose", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``headpose`` console script."""
    args = build_parser().parse_args(argv)
    args.run(args)
