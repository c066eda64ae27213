"""The model keys of ``params.yaml``, checked against the code that owns them.

:mod:`headpose.params` checks every key's type and range without importing any model code (so
the data stages never depend on it). :func:`validate_model_params` adds what only the models
know: ``arch`` names a registered backbone or a timm model (the close matches otherwise), and
the heads' keys follow their heads' rules (:func:`headpose.models.heads.validate_head_params`:
``head`` names a registered head, each head checks the keys it owns, and the keys of the other
heads stay at their defaults). The ``params`` stage and training call it before any work.
"""

from __future__ import annotations

from headpose.models.heads import validate_head_params
from headpose.models.registry import get_arch


def validate_model_params(params: dict) -> dict:
    """Check the model keys of params already checked by :func:`headpose.params.validate`;
    return them unchanged or raise a HeadposeError naming the key and what was expected."""
    get_arch(params["arch"], "params.yaml: arch")  # a timm name must name a timm model
    validate_head_params(params)
    return params
