"""Which samples a test set holds, and the guard of published test sets.

A test set is a sample list, or a dataset (folder or file) of any registered format scanned and
filtered as the filelists stage does (:func:`evaluation_samples`). Before a number is reported, each
format's guard checks the set (:func:`check_published_test_set`): the real AFLW2000-3D must come as
its 1969 protocol images, each once (:class:`headpose.datasets.mat.FormatAFLW2000`), and a BIWI set
is recognised as protocol 1 when it is exactly its 13,219 frames with their boxes
(:class:`headpose.datasets.biwi.FormatBIWI`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from headpose.datasets.biwi import DETECTOR_FRAME_LIST, FormatBIWI, detected_entries
from headpose.datasets.filelists import scan_dataset, usable_samples
from headpose.datasets.mat import FormatAFLW2000
from headpose.datasets.registry import (
    Sample,
    check_test_set,
    entries_of,
    read_samples,
    resolve_all,
)
from headpose.errors import HeadposeError


def check_published_test_set(samples: list[Sample], source: str) -> bool:
    """Run every format's guard on a test set (one may refuse it, naming ``source``); return
    whether it is the real AFLW2000-3D's 1969-image protocol."""
    return FormatAFLW2000.name in check_test_set(samples, source)


def evaluation_samples(
    data: str | os.PathLike,
    max_angle_deg: float = 99,
    frame_list: str | os.PathLike | None = None,
    detect: Callable[[np.ndarray], list[tuple[float, float, float, float]]] | None = None,
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """(samples to evaluate, skipped (entry, reason)): a sample list file (nothing skipped), or
    a dataset of any registered format (an AFLW2000 folder, a BIWI ``hpdb`` folder with or
    without ``frame_list``, an FSA-Net ``.npz``) scanned and filtered as the filelists stage does
    (valid samples with every |angle| <= ``max_angle_deg``), with every sample left out and
    why. ``frame_list`` ``"detector"`` (BIWI): the frames' boxes come from ``detect`` (RGB image
    -> face boxes), see :func:`headpose.datasets.biwi.detected_entries`."""
    path = Path(data)
    detecting = str(frame_list) == DETECTOR_FRAME_LIST
    if detecting and detect is None:
        raise HeadposeError("frame_list: detector needs a face detector")
    if path.is_dir() or path.suffix == ".npz":
        scan = scan_dataset(data, "test", "aflw2000", frame_list=None if detecting else frame_list)
        samples, skipped, _ = usable_samples(scan, max_angle_deg)
        reasons = [(entry, reason) for entry, _, reason in skipped]
        if detecting:
            if any(sample.format is not FormatBIWI for sample in samples):
                raise HeadposeError(f"{data}: frame_list: detector applies to BIWI folders")
            boxed, missed = detected_entries(entries_of(samples), detect)
            samples, reasons = resolve_all(boxed), reasons + missed
        if not samples:
            example = f"; e.g. {reasons[0][0]}: {reasons[0][1]}" if reasons else ""
            raise HeadposeError(
                f"{data}: no valid sample has all |angles| <= {max_angle_deg:g}{example}"
            )
        return samples, reasons
    if frame_list is not None:
        raise HeadposeError(f"a frame list applies to a BIWI folder, not to the list {data}")
    return read_samples(data), []
