"""Dataset formats: how each dataset's samples are found, read, grouped and guarded.

A *format* is a :class:`DatasetFormat` subclass registered with :func:`register_format` (as
heads and backbones are registered). It owns, for its datasets:

* **finding** samples in a folder (or file): :meth:`DatasetFormat.scan` returns one *entry* per
  sample, the string the file lists hold (a path without extension for 300W_LP and AFLW2000,
  ``.../NN/frame_XXXXX`` for BIWI, ``file.npz#row`` for a preprocessed array file), plus what
  it found but could not pair;
* **reading** one entry: :meth:`DatasetFormat.header` (the labels, validated without decoding
  the pixels) and :meth:`DatasetFormat.read` (the RGB image and the labels), both in the one
  format-neutral value :class:`~headpose.datasets.labels.Labels`: the pose, and where the face
  is (landmarks, framed by the crop protocol, or a stored *crop box* that is itself the final
  crop: BIWI's protocol-1 boxes, the arrays of an ``.npz``);
* **grouping** entries for a train/val split (:meth:`DatasetFormat.group_key`: the photo, the
  person or the sequence), and the **guard** of its published test set
  (:meth:`DatasetFormat.check_test_set`, e.g. AFLW2000's 1969 images);
* the **content digest** of an entry (:meth:`DatasetFormat.digest`) the crop store is keyed by.

An entry names its format by its form (:meth:`DatasetFormat.owns`), so a list mixing datasets
reads each line with the right format, and the 300W_LP/AFLW2000 lists are unchanged. **The one
door to a sample** is :class:`Sample`: an entry with its format, resolved once where the entry
enters (:func:`resolve`, :func:`read_samples` for a list file, a format's scan) and carried
with it; everything above the datasets reads, hashes and groups samples through it and never
asks for a format again. A folder's format is recognised from its layout (:func:`recognise`)
or named. Adding a format is one module that subclasses :class:`DatasetFormat` and registers it
(in :data:`FORMATS`, a :class:`headpose.registry.Registry`: a name is taken once; a plugin may
register one); ``FORMAT_MODULES`` lists the built-in ones, imported when the registry is first
used.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from headpose.datasets.labels import Labels
from headpose.errors import HeadposeError
from headpose.io.lists import read_list
from headpose.registry import Registry

# Built-in formats: imported when the registry is first used (they import this module; see
# formats() for the order they are matched in).
FORMAT_MODULES = ("headpose.datasets.biwi", "headpose.datasets.biwi_npz", "headpose.datasets.mat")


@dataclass
class Scan:
    """What :meth:`DatasetFormat.scan` found: sample entries (sorted) and files it could not
    use, each with the reason."""

    entries: list[str]
    unpaired: list[tuple[str, str]] = field(default_factory=list)  # (entry or file, reason)


class DatasetFormat(ABC):
    """One dataset format (see the module docstring). Subclasses set :attr:`name` and
    :attr:`description` and implement the abstract methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    # Whether its samples' crops are their stored boxes (Labels.crop_box), whatever the crop
    # protocol (BIWI with a frame list or projected boxes, an FSA-Net .npz), rather than
    # framed from landmarks (Labels.landmarks_2d / landmarks_3d).
    stores_crop_box: ClassVar[bool] = False
    # Whether its folders can look like another format's (300W_LP and AFLW2000 differ only by
    # nesting): a stage's default format then wins over recognition (:func:`dataset_format`).
    shared_layout: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def recognises(cls, root: Path) -> bool:
        """Whether ``root`` (a folder or a file) has this format's layout (a cheap look)."""

    @classmethod
    @abstractmethod
    def owns(cls, entry: str) -> bool:
        """Whether a list entry has this format's form (no file is read)."""

    @classmethod
    @abstractmethod
    def scan(cls, root: Path) -> Scan:
        """Every sample entry under ``root``; a HeadposeError when it holds none."""

    @classmethod
    @abstractmethod
    def header(cls, entry: str) -> Labels:
        """The validated labels of an entry, its pixels not decoded (a HeadposeError naming the
        file at fault otherwise)."""

    @classmethod
    @abstractmethod
    def read(cls, entry: str) -> tuple[np.ndarray, Labels]:
        """(RGB uint8 image, labels) of an entry."""

    @classmethod
    @abstractmethod
    def digest(cls, entry: str) -> str:
        """A digest of everything the entry's crop and labels are made from."""

    @classmethod
    def group_key(cls, entry: str) -> str:
        """The group an entry belongs to for a train/val split (default: the entry itself)."""
        return entry

    @classmethod
    def sequence(cls, entry: str) -> str | None:
        """The recording sequence an entry belongs to, for formats recorded as sequences
        (BIWI's ``NN``); None otherwise. A held-out-sequence test split (BIWI protocol 2) needs
        it."""
        return None

    @classmethod
    def image_file(cls, entry: str) -> str | None:
        """The image file of an entry, for the file lists' cheap decode check (None: the
        pixels are no file of their own)."""
        return None

    @classmethod
    def check_test_set(cls, entries: list[str], source: str) -> bool:
        """Refuse (HeadposeError) a test set that is a damaged copy of this format's published
        one; return whether it is the published set (default: never recognised)."""
        return False


FORMATS: Registry[type[DatasetFormat]] = Registry("dataset format", builtins=FORMAT_MODULES)


def register_format(cls: type[DatasetFormat]) -> type[DatasetFormat]:
    """Class decorator: make a format known by its ``name``."""
    return FORMATS.register(cls)


def formats() -> dict[str, type[DatasetFormat]]:
    """Every registered format by name, in the order entries and folders are matched: those
    with a layout of their own first, then the ``.jpg`` + ``.mat`` ones, which read every entry
    no other format claims."""
    ordered = sorted(FORMATS.values(), key=lambda dataset_format: dataset_format.shared_layout)
    return {dataset_format.name: dataset_format for dataset_format in ordered}


def get_format(name: str, source: str = "") -> type[DatasetFormat]:
    """The format registered as ``name``, or a HeadposeError (starting with ``source``) listing
    the known ones."""
    return FORMATS.get(name, source)


def recognise(root: str | os.PathLike) -> type[DatasetFormat]:
    """The format whose layout ``root`` has, or a HeadposeError saying what was looked for."""
    path = Path(root)
    if not path.exists():
        raise HeadposeError(f"dataset {path} does not exist")
    for dataset_format in formats().values():
        if dataset_format.recognises(path):
            return dataset_format
    raise HeadposeError(f"{path}: no known dataset layout ({describe_layouts()})")


def describe_layouts(besides: type[DatasetFormat] | None = None) -> str:
    """What each registered format (but ``besides``) expects, ``name: description`` joined by
    ``; ``: the message for a folder no format recognises."""
    return "; ".join(f"{f.name}: {f.description}" for f in formats().values() if f is not besides)


def format_of(entry: str) -> type[DatasetFormat]:
    """The format a list entry belongs to, by its form (:meth:`DatasetFormat.owns`)."""
    for dataset_format in formats().values():
        if dataset_format.owns(entry):
            return dataset_format
    raise HeadposeError(f"{entry}: no dataset format reads this entry")


@dataclass(frozen=True)
class Sample:
    """One sample: its list ``entry`` and the ``format`` that reads it, resolved once
    (:func:`resolve`). The only way the layers above the datasets read, hash and group a
    sample."""

    entry: str
    format: type[DatasetFormat]

    def __str__(self) -> str:
        return self.entry

    @property
    def stores_crop_box(self) -> bool:
        """Whether its crop is its stored box (else a crop protocol frames its landmarks)."""
        return self.format.stores_crop_box

    def read(self) -> tuple[np.ndarray, Labels]:
        """(RGB uint8 image, validated labels)."""
        return self.format.read(self.entry)

    def header(self) -> Labels:
        """The validated labels, pixels not decoded."""
        return self.format.header(self.entry)

    def digest(self) -> str:
        """A digest of everything its crop and labels are made from (the crop store's key)."""
        return self.format.digest(self.entry)

    def group_key(self) -> str:
        """The group it belongs to for a train/val split (photo, person or itself)."""
        return self.format.group_key(self.entry)

    def sequence(self) -> str | None:
        """Its recording sequence (BIWI's ``NN``), or None."""
        return self.format.sequence(self.entry)

    def image_file(self) -> str | None:
        """Its image file (None: its pixels are no file of their own)."""
        return self.format.image_file(self.entry)


def resolve(entry: str) -> Sample:
    """The sample a list entry names, its format found by the entry's form."""
    return Sample(entry, format_of(entry))


def resolve_all(entries: Iterable[str]) -> list[Sample]:
    """:func:`resolve` for every entry, in order."""
    return [resolve(entry) for entry in entries]


def read_samples(path: str | os.PathLike, allow_empty: bool = False) -> list[Sample]:
    """The samples of a list file (:func:`headpose.io.lists.read_list`), each resolved."""
    return resolve_all(read_list(path, allow_empty))


def entries_of(samples: Iterable[Sample]) -> list[str]:
    """The list entries of ``samples``, in order (what a list file holds)."""
    return [sample.entry for sample in samples]


def dataset_format(root: str | os.PathLike, default: str) -> type[DatasetFormat]:
    """The format of a dataset root: the one its layout has, where that is no ``.jpg`` +
    ``.mat`` layout; ``default`` (``300w_lp`` or ``aflw2000``, whose layouts overlap) otherwise,
    as the pipeline always read its training and test folders."""
    fallback = get_format(default)
    try:
        found = recognise(root)
    except HeadposeError:
        return fallback
    return fallback if found.shared_layout and fallback.shared_layout else found


def check_test_set(samples: list[Sample], source: str) -> list[str]:
    """Apply every format's published-test-set guard to the entries it owns (each guard runs:
    one may refuse the list, naming ``source``); return the names of the formats whose
    published set the entries are."""
    entries = entries_of(samples)
    return [
        dataset_format.name
        for dataset_format in formats().values()
        if (members := [entry for entry in entries if dataset_format.owns(entry)])
        and dataset_format.check_test_set(members, source)
    ]
