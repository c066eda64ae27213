"""The ``headpose`` command: one sub-command per user-facing task.

Each sub-command is registered by a small ``add_*_command(subparsers)`` function that lives in
the module owning the task, so this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib

from headpose.errors import exit_on_error

# (module, function) pairs that add a sub-command to the parser.
COMMANDS: list[tuple[str, str]] = []
COMMANDS.append(("headpose.app.predict", "add_predict_command"))
COMMANDS.append(("headpose.deploy.export", "add_export_command"))
COMMANDS.append(("headpose.deploy.benchmark", "add_benchmark_command"))
COMMANDS.append(("headpose.evaluation.evaluate", "add_evaluate_command"))
COMMANDS.append(("headpose.compare.report", "add_compare_command"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headpose", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name, function_name in COMMANDS:
        getattr(importlib.import_module(module_name), function_name)(subparsers)
    return parser


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``headpose`` console script."""
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
