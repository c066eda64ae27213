"""``python -m headpose.cli``: the ``headpose`` command."""

from headpose.cli import main

main()
