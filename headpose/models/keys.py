"""The model keys of ``params.yaml``, checked against the code that owns them.

:mod:`headpose.params` checks every key's type and range without importing any model code (so
the data stages never depend on it). :func:`validate_model_params` adds what only the models
know: ``arch`` names a registered backbone or a timm model (the close matches otherwise),
``head`` a known head, ``bin_width`` divides the bins' range and ``expectation`` is one of
their modes. ``bin_width``, ``expectation`` and ``alpha`` belong to the bins head: with another
head they must stay at their defaults (:data:`BINS_ONLY_DEFAULTS`), so a variant never silently
ignores a knob. The ``params`` stage and training call it before any work.
"""

from __future__ import annotations

from headpose.errors import HeadposeError
from headpose.models.bins import EXPECTATION_MODES, RANGE_DEG, valid_bin_widths
from headpose.models.heads import HEAD_NAMES
from headpose.models.registry import get_arch

# The keys only the bins head reads, at the values that mean "not set" for the other heads.
BINS_ONLY_DEFAULTS = {"bin_width": 3, "expectation": "centers", "alpha": 0.1}


def validate_model_params(params: dict) -> dict:
    """Check the model keys of params already checked by :func:`headpose.params.validate`;
    return them unchanged or raise a HeadposeError naming the key and what was expected."""
    try:
        get_arch(params["arch"])  # a timm name must name a timm model
    except HeadposeError as error:
        raise HeadposeError(f"params.yaml: arch: {error}") from None
    allowed = {  # key: (what it must be, the values)
        "head": ("one of", HEAD_NAMES),
        "bin_width": (f"a bin width in degrees that divides {RANGE_DEG}:", valid_bin_widths()),
        "expectation": ("one of", EXPECTATION_MODES),
    }
    for key, (expected, values) in allowed.items():
        if params[key] not in values:
            raise HeadposeError(
                f"params.yaml: {key} is {params[key]!r}; expected {expected} "
                + ", ".join(map(str, values))
            )
    if params["head"] != "bins":
        for key, default in BINS_ONLY_DEFAULTS.items():
            if params[key] != default:
                raise HeadposeError(
                    f"params.yaml: {key} is {params[key]!r}, but {key} does not apply to head "
                    f"{params['head']} (bins head only); leave it at {default!r}"
                )
    return params
