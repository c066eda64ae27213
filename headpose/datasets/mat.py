"""The ``.jpg`` + ``.mat`` formats: 300W_LP (training) and AFLW2000-3D (testing).

A sample is a pair ``NAME.jpg`` + ``NAME.mat`` (:mod:`headpose.io.formats` reads and validates
both); its entry is the pair's path without extension. The face is framed from its landmarks
by the crop protocol.

* ``300w_lp``: pairs searched recursively (the ``landmarks/`` folder holds none), grouped by
  source photo (:func:`headpose.datasets.naming.group_key`: pose variants, ``*_Flip`` twins
  and 300W_AUG rotations of one photo share a group).
* ``aflw2000``: pairs of one flat folder (``Code/`` is not searched). Its guard: a test list is
  recognised as the real AFLW2000-3D when all its samples lie in one folder whose pairs are
  exactly the 2000 of the real set (the SHA-256 of their sorted names,
  :data:`AFLW2000_NAMES_SHA256`); then it must hold exactly the 1969 protocol images, each once
  (:data:`AFLW2000_PROTOCOL_NAMES_SHA256`), so no number is reported under another protocol by
  mistake. A partial copy of the set is not recognised.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from headpose.datasets import registry
from headpose.datasets.naming import group_key as photo_group_key
from headpose.datasets.registry import DatasetFormat, Labels, Scan, register_format
from headpose.errors import HeadposeError
from headpose.io.formats import (
    ANNOTATION_SUFFIX,
    IMAGE_SUFFIX,
    find_sample_stems,
    read_sample,
    sample_header,
)

AFLW2000_PROTOCOL_COUNT = 1969
AFLW2000_NAMES_SHA256 = "acb1af9f109532c8cbb1c8a5a8e402c7acaf11402375c186dd343bf922704d70"
# The 1969 names whose angles all lie within +-99 degrees, sorted, one per line.
AFLW2000_PROTOCOL_NAMES_SHA256 = "039b5d774142a6e25e03b473b8b492e45d4ab374dd08599945c0d33409faf488"
IGNORED_FOLDERS = ("landmarks",)  # 300W_LP's landmark folder holds no samples


def _sha256_of_file(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        raise HeadposeError(f"{path}: sample file not found") from None
    except OSError as error:
        raise HeadposeError(f"{path}: cannot read sample file ({error.strerror})") from None


def _names_digest(names) -> str:
    return hashlib.sha256("".join(f"{name}\n" for name in sorted(names)).encode()).hexdigest()


def _has_pairs(folder: Path, pattern: str) -> bool:
    return any(image.with_suffix(ANNOTATION_SUFFIX).exists() for image in folder.glob(pattern))


class MatPairFormat(DatasetFormat):
    """Shared by 300W_LP and AFLW2000: one ``.jpg`` + ``.mat`` pair per sample."""

    recursive: bool
    shared_layout = True

    @classmethod
    def owns(cls, entry: str) -> bool:
        """Every entry no other format claims (the lists of every earlier version)."""
        others = [f for f in registry.formats().values() if not issubclass(f, MatPairFormat)]
        return not any(other.owns(entry) for other in others)

    @classmethod
    def scan(cls, root: Path) -> Scan:
        stems, image_orphans = find_sample_stems(root, cls.recursive)
        stems = [stem for stem in stems if stem.split("/")[0] not in IGNORED_FOLDERS]
        pattern = f"**/*{ANNOTATION_SUFFIX}" if cls.recursive else f"*{ANNOTATION_SUFFIX}"
        paired = set(stems) | set(image_orphans)
        annotation_orphans = [
            stem
            for mat in sorted(root.glob(pattern))
            if (stem := _stem(mat, root)) not in paired
            and stem.split("/")[0] not in IGNORED_FOLDERS
        ]
        unpaired = [
            (sample_path(root, stem), f"no {ANNOTATION_SUFFIX} beside the image")
            for stem in image_orphans
        ] + [
            (sample_path(root, stem), f"no {IMAGE_SUFFIX} beside the annotation")
            for stem in annotation_orphans
        ]
        return Scan([sample_path(root, stem) for stem in stems], unpaired)

    @classmethod
    def header(cls, entry: str) -> Labels:
        annotation, _ = sample_header(entry)
        return Labels(annotation.angles_deg, annotation=annotation)

    @classmethod
    def read(cls, entry: str) -> tuple[np.ndarray, Labels]:
        image, annotation = read_sample(entry)
        return image, Labels(annotation.angles_deg, annotation=annotation)

    @classmethod
    def image_file(cls, entry: str) -> str:
        return entry + IMAGE_SUFFIX

    @classmethod
    def digest(cls, entry: str) -> str:
        return _sha256_of_file(entry + ANNOTATION_SUFFIX) + _sha256_of_file(entry + IMAGE_SUFFIX)


def _stem(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def sample_path(root: str | os.PathLike, stem: str) -> str:
    """A ``.jpg`` + ``.mat`` sample's entry: the dataset root as given joined with its stem
    (POSIX), the pair's path without extension."""
    return (Path(root) / stem).as_posix()


@register_format
class Format300WLP(MatPairFormat):
    name = "300w_lp"
    description = "NAME.jpg + NAME.mat pairs in subfolders (300W_LP), searched recursively"
    recursive = True

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return (
            root.is_dir()
            and not _has_pairs(root, f"*{IMAGE_SUFFIX}")
            and any(
                _has_pairs(folder, f"*{IMAGE_SUFFIX}")
                for folder in root.iterdir()
                if folder.is_dir()
            )
        )

    @classmethod
    def group_key(cls, entry: str) -> str:
        return photo_group_key(entry)


@register_format
class FormatAFLW2000(MatPairFormat):
    name = "aflw2000"
    description = "NAME.jpg + NAME.mat pairs in one flat folder (AFLW2000-3D)"
    recursive = False

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return root.is_dir() and _has_pairs(root, f"*{IMAGE_SUFFIX}")

    @classmethod
    def check_test_set(cls, entries: list[str], source: str) -> bool:
        """The 1969-image guard (see the module docstring)."""
        if not is_real_aflw2000(entries):
            return False
        names = [Path(entry).name for entry in entries]
        distinct = set(names)
        if (
            len(names) == len(distinct)
            and _names_digest(distinct) == AFLW2000_PROTOCOL_NAMES_SHA256
        ):
            return True
        repeated = len(names) - len(distinct)
        what = f"{len(entries)} samples ({len(distinct)} distinct"
        what += f", {repeated} listed more than once)" if repeated else ")"
        raise HeadposeError(
            f"{source} holds {what} of the real AFLW2000-3D, but the standard protocol (drop any "
            f"|angle| > 99 deg) is {AFLW2000_PROTOCOL_COUNT} distinct images: refusing to report "
            "a number that would not compare with published results; check max_angle, the "
            "skipped samples and the list"
        )


def is_real_aflw2000(entries: list[str]) -> bool:
    """Whether the samples lie in one folder holding exactly the real AFLW2000-3D pairs."""
    folders = {Path(entry).parent for entry in entries}
    if len(folders) != 1:
        return False
    folder = folders.pop()
    names = [path.stem for path in folder.glob("*.jpg") if path.with_suffix(".mat").is_file()]
    return _names_digest(names) == AFLW2000_NAMES_SHA256
