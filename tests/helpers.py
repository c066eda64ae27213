"""What many test modules share: the repository's root (the one definition of ``REPO_ROOT``)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
