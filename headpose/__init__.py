"""headpose: a reproducible HopeNet-style head-pose pipeline (data, training, evaluation).

The Python API (:mod:`headpose.app.api`) is importable from here, loaded on first use so that
``import headpose`` stays cheap (no torch)::

    model = headpose.load("models/best.pt")   # or an exported .onnx
    poses = model.predict("face.jpg")          # [Pose(yaw_deg, pitch_deg, roll_deg, box, score)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["HeadPoseModel", "Pose", "__version__", "load"]

if TYPE_CHECKING:
    from headpose.app.api import HeadPoseModel, Pose, load

_API_NAMES = ("HeadPoseModel", "Pose", "load")


def __getattr__(name: str) -> Any:
    """The Python API's names, imported on first use."""
    if name in _API_NAMES:
        from headpose.app import api

        return getattr(api, name)
    raise AttributeError(f"module 'headpose' has no attribute {name!r}")
