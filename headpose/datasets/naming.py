"""Sample names: which samples derive from the same source photo.

300W_LP renders several poses of one photo as ``NAME_<face>_<k>`` (for example
``AFW_1051618982_1_0`` ... ``AFW_1051618982_1_9``, ``LFPW_image_test_0001_0``) and stores a
mirrored twin under the same name in a ``*_Flip`` folder. The augment stage (300W_AUG) adds
in-plane rotated copies named ``NAME_rot<angle>`` (``AFW_1051618982_1_0_rot-20``). All of these
share one *group key*, so a train/validation split by group never leaks a photo across sides.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

ROTATED_SUFFIX = re.compile(r"_rot-?\d+(?:\.\d+)?$")
# A 300W_LP pose variant: "<photo>_<number>_<k>"; the trailing "_<k>" is the variant index.
POSE_VARIANT = re.compile(r"(?P<photo>.+_\d+)_\d+")


def rotated_name(name: str, angle_deg: float) -> str:
    """Name of ``name`` rotated in-plane by ``angle_deg`` (e.g. ``X_rot-20``, ``X_rot2.5``)."""
    return f"{name}_rot{angle_deg:g}"


def group_key(sample_path: str) -> str:
    """The source photo a sample derives from: its file name without rotation and variant suffix.

    The folder is ignored, so a ``*_Flip`` twin falls in the group of its original. A name that
    does not end in ``_<number>_<k>`` (such as ``image00002`` or ``face_001``) is its own group.
    """
    name = ROTATED_SUFFIX.sub("", PurePosixPath(sample_path).name)
    variant = POSE_VARIANT.fullmatch(name)
    return variant["photo"] if variant else name
