"""The AFLW2000 protocol: which samples a test set holds, and the 1969-image guard.

The published AFLW2000 numbers are over the 1969 images whose angles all lie within +-99 degrees
(see docs/conventions.md). A test list is recognised as the real AFLW2000-3D when all its samples
lie in one folder whose ``.jpg`` + ``.mat`` pairs are exactly the 2000 of the real set (the
SHA-256 of their sorted names, :data:`AFLW2000_NAMES_SHA256`); then it must hold exactly the
1969 protocol images, each once (the SHA-256 of their distinct sorted names,
:data:`AFLW2000_PROTOCOL_NAMES_SHA256`, and no repeats), so no number is reported under another
protocol by mistake: a list of 1969 lines with one image twice and another missing is refused
too. A partial copy of the set is not recognised. A folder given instead of a list is scanned
and filtered as the filelists stage does (:func:`evaluation_stems`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from headpose.datasets.filelists import scan_dataset, usable_samples
from headpose.errors import HeadposeError
from headpose.io.formats import read_list

AFLW2000_PROTOCOL_COUNT = 1969
AFLW2000_NAMES_SHA256 = "acb1af9f109532c8cbb1c8a5a8e402c7acaf11402375c186dd343bf922704d70"
# The 1969 names whose angles all lie within +-99 degrees, sorted, one per line.
AFLW2000_PROTOCOL_NAMES_SHA256 = "039b5d774142a6e25e03b473b8b492e45d4ab374dd08599945c0d33409faf488"


def _names_digest(names) -> str:
    return hashlib.sha256("".join(f"{name}\n" for name in sorted(names)).encode()).hexdigest()


def is_real_aflw2000(stems: list[str]) -> bool:
    """Whether the samples lie in one folder holding exactly the real AFLW2000-3D pairs."""
    folders = {Path(stem).parent for stem in stems}
    if len(folders) != 1:
        return False
    folder = folders.pop()
    names = [path.stem for path in folder.glob("*.jpg") if path.with_suffix(".mat").is_file()]
    return _names_digest(names) == AFLW2000_NAMES_SHA256


def check_protocol(stems: list[str], source: str) -> bool:
    """Refuse a real-AFLW2000 test list that is not the 1969 protocol images, each once; return
    whether it is real."""
    real = is_real_aflw2000(stems)
    if not real:
        return False
    names = [Path(stem).name for stem in stems]
    distinct = set(names)
    if len(names) == len(distinct) and _names_digest(distinct) == AFLW2000_PROTOCOL_NAMES_SHA256:
        return True
    repeated = len(names) - len(distinct)
    what = f"{len(stems)} samples ({len(distinct)} distinct"
    what += f", {repeated} listed more than once)" if repeated else ")"
    raise HeadposeError(
        f"{source} holds {what} of the real AFLW2000-3D, but the standard protocol (drop any "
        f"|angle| > 99 deg) is {AFLW2000_PROTOCOL_COUNT} distinct images: refusing to report a "
        "number that would not compare with published results; check max_angle, the skipped "
        "samples and the list"
    )


def evaluation_stems(
    data: str | os.PathLike, max_angle_deg: float = 99
) -> tuple[list[str], list[tuple[str, str]]]:
    """(samples to evaluate, skipped (sample, reason)): a sample list file (nothing skipped), or an
    AFLW2000-layout folder scanned and filtered as the filelists stage does (valid pairs with
    every |angle| <= ``max_angle_deg``), with every sample left out and why."""
    if Path(data).is_dir():
        scan = scan_dataset(data, "test", recursive=False)
        stems, skipped, _ = usable_samples(scan, max_angle_deg)
        reasons = [(sample, reason) for sample, _, reason in skipped]
        if not stems:
            example = f"; e.g. {reasons[0][0]}: {reasons[0][1]}" if reasons else ""
            raise HeadposeError(
                f"{data}: no valid sample has all |angles| <= {max_angle_deg:g}{example}"
            )
        return stems, reasons
    return read_list(data), []
