"""What many test modules share: the repository's root (the one definition of ``REPO_ROOT``)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def as_samples(entries) -> list:
    """The :class:`~headpose.datasets.registry.Sample` of each list entry, in order."""
    from headpose.datasets.registry import resolve_all

    return resolve_all(str(entry) for entry in entries)
