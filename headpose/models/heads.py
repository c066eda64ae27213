"""The heads: how a network's outputs become angles, chosen by the ``head`` key.

``head: bins`` is HopeNet's binned classification (:class:`headpose.models.bins.Bins`, with its
``bin_width`` and ``expectation``); ``head: rotation_6d`` is the 6D rotation with Gram-Schmidt
(:class:`headpose.models.rotation.Rotation6D`). Both offer ``name``, ``layer_sizes`` (the
network's output layers), ``meta`` (what a checkpoint records) and ``angles_deg`` (outputs to
(N, 3) degrees); the loss of each is in :mod:`headpose.training.loss`. A checkpoint records its
head in its meta (checkpoints written before there was a choice hold bins and no ``head`` key).
"""

from __future__ import annotations

from headpose.errors import HeadposeError
from headpose.models.bins import Bins
from headpose.models.rotation import Rotation6D

Head = Bins | Rotation6D
HEAD_NAMES = (Bins.name, Rotation6D.name)


def head_from_params(params: dict) -> Head:
    """The head that ``params`` (a validated params.yaml) train."""
    if params["head"] == Rotation6D.name:
        return Rotation6D()
    return Bins(params["bin_width"], params["expectation"])


def head_from_meta(meta: dict, source: str = "checkpoint") -> Head:
    """The head a checkpoint's meta records (``head`` absent: bins, as before the choice)."""
    name = meta.get("head", Bins.name)
    if name == Rotation6D.name:
        return Rotation6D()
    if name != Bins.name:
        raise HeadposeError(
            f"{source}: unknown head {name!r}; expected one of {', '.join(HEAD_NAMES)}"
        )
    missing = [key for key in ("num_bins", "bin_width", "expectation") if key not in meta]
    if missing:
        raise HeadposeError(f"{source}: a bins head without {', '.join(missing)} in its meta")
    return Bins.from_meta(meta)
