"""Preprocessed BIWI: the ``.npz`` files FSA-Net's scripts write and 6DRepNet reads
(``BIWI_noTrack.npz``, ``BIWI_train.npz``, ``BIWI_test.npz``).

Arrays: ``image`` uint8 (N, S, S, 3), the final crops (protocol 1: FSA-Net's enlarged MTCNN
boxes, resized to S); ``pose`` (N, 3) yaw, pitch, roll in degrees by the benchmark formula.
FSA-Net wrote the crops with OpenCV, so their channels are **BGR**. Entries:
``<file>.npz#<row>`` reads them as BGR and gives the model RGB, the pixels the raw frames give
(a test checks this against :mod:`headpose.datasets.biwi` on the genuine frame); this is the
default and what a model trained on RGB 300W_LP images must see. ``<file>.npz#<row>:rgb`` takes
the arrays as RGB: the channel swap of 6DRepNet's published BIWI evaluation (its 3.47 fed these
BGR arrays as if RGB), for reproducing that number only.

No file names are stored, so rows cannot be traced back to frames or grouped by person: such a
file is a test set, one group per row.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from headpose.datasets.labels import Labels, check_angles
from headpose.datasets.registry import DatasetFormat, Scan, register_format
from headpose.errors import HeadposeError
from headpose.io.arrays import read_npz

ENTRY = re.compile(r"(?P<file>.+\.npz)#(?P<row>\d+)(?::(?P<order>bgr|rgb))?")
CHANNEL_ORDERS = ("bgr", "rgb")


@lru_cache(maxsize=4)
def load_arrays(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, pose) of an FSA-Net ``.npz`` (:func:`headpose.io.arrays.read_npz`: declared
    sizes bounded by the file's), validated; a HeadposeError naming the file."""
    arrays = read_npz(path, ("image", "pose"), "an FSA-Net .npz")
    images, poses = arrays["image"], arrays["pose"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise HeadposeError(
            f"{path}: 'image' is {images.dtype} {images.shape}; expected uint8 (N, S, S, 3)"
        )
    if images.shape[1] != images.shape[2] or images.shape[1] < 1:
        raise HeadposeError(f"{path}: 'image' crops are {images.shape[1:3]}; expected square")
    if poses.shape != (len(images), 3) or poses.dtype.kind not in "iuf":
        raise HeadposeError(
            f"{path}: 'pose' is {poses.dtype} {poses.shape}; expected ({len(images)}, 3) numbers"
        )
    return images, poses.astype(np.float64)


def _row(entry: str) -> tuple[str, int, str]:
    match = ENTRY.fullmatch(entry)
    if not match:
        raise HeadposeError(f"{entry}: not an .npz entry (<file>.npz#<row>[:rgb])")
    images, _ = load_arrays(match["file"])
    row = int(match["row"])
    if row >= len(images):
        raise HeadposeError(f"{entry}: {match['file']} holds {len(images)} rows")
    return match["file"], row, match["order"] or "bgr"


@register_format
class FormatFSANetNpz(DatasetFormat):
    name = "biwi_npz"
    stores_crop_box = True
    description = "an FSA-Net .npz file ('image' uint8 N x S x S x 3 BGR, 'pose' yaw/pitch/roll)"

    @classmethod
    def recognises(cls, root: Path) -> bool:
        if not (root.is_file() and root.suffix == ".npz"):
            return False
        try:
            with np.load(root, allow_pickle=False) as arrays:
                return {"image", "pose"} <= set(arrays.files)
        except (OSError, ValueError):
            return False

    @classmethod
    def owns(cls, entry: str) -> bool:
        return ENTRY.fullmatch(entry) is not None

    @classmethod
    def scan(cls, root: Path, channel_order: str = "bgr") -> Scan:
        if channel_order not in CHANNEL_ORDERS:
            raise HeadposeError(
                f"channel order {channel_order!r}: expected one of {CHANNEL_ORDERS}"
            )
        images, _ = load_arrays(root.as_posix())
        suffix = "" if channel_order == "bgr" else f":{channel_order}"
        return Scan([f"{root.as_posix()}#{row}{suffix}" for row in range(len(images))])

    @classmethod
    def header(cls, entry: str) -> Labels:
        path, row, _ = _row(entry)
        images, poses = load_arrays(path)
        angles = check_angles(tuple(poses[row].tolist()), entry)
        side = images.shape[1]
        return Labels(angles, crop_box=(0, 0, side, side))

    @classmethod
    def read(cls, entry: str) -> tuple[np.ndarray, Labels]:
        labels = cls.header(entry)
        path, row, order = _row(entry)
        image = load_arrays(path)[0][row]
        return np.ascontiguousarray(image[..., ::-1] if order == "bgr" else image), labels

    @classmethod
    def digest(cls, entry: str) -> str:
        path, row, order = _row(entry)
        images, poses = load_arrays(path)
        digest = hashlib.sha256(order.encode())
        digest.update(np.ascontiguousarray(images[row]).tobytes())
        digest.update(poses[row].tobytes())
        return digest.hexdigest()
