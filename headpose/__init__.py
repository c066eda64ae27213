"""headpose: a reproducible HopeNet-style head-pose pipeline (data, training, evaluation).

The Python API (:mod:`headpose.app.api`) is importable from here. It is imported by name on
first use: ``import headpose`` stays cheap (no torch), and code that never touches these names
(the DVC stages) never runs the API's modules, so their dependencies
(``tests/test_stage_deps.py``) do not include them::

    model = headpose.load("models/best.pt")   # or an exported .onnx
    poses = model.predict("face.jpg")          # [Pose(yaw_deg, pitch_deg, roll_deg, box, score)]
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["HeadPoseModel", "Pose", "PoseError", "__version__", "load"]

_API_NAMES = ("HeadPoseModel", "Pose", "PoseError", "load")


def __getattr__(name: str) -> Any:
    """The Python API's names, imported on first use."""
    if name in _API_NAMES:
        return getattr(importlib.import_module("headpose.app.api"), name)
    raise AttributeError(f"module 'headpose' has no attribute {name!r}")
