"""Running the ``headpose`` command inside the test process."""

from __future__ import annotations

from headpose.cli import main


def run_cli(args: list[str]) -> int:
    """The exit status of ``headpose ARGS`` run in this process (0 when it returns normally)."""
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
