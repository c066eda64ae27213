"""File lists: scan, validate, filter and split the datasets into train/val/test lists.

The ``filelists`` stage finds every sample of the training folder and of the test folder through
their dataset format (:mod:`headpose.datasets.registry`: a folder's format is recognised from
its layout; a ``.jpg`` + ``.mat`` folder is read as 300W_LP, searched recursively, for training
and as AFLW2000, flat, for testing), and checks each with its format's one validation (the
labels, the image header, the face box against the image) and a cheap decode of the image. A
name holding a line break cannot be listed and is skipped too. Samples with any |angle| above
``max_angle`` are dropped (the standard 1969-image AFLW2000 protocol). Nothing is dropped
silently: every skipped sample is listed with its reason.

Training samples are split into train/val by group (the format's
:meth:`~headpose.datasets.registry.DatasetFormat.group_key`: the source photo for 300W_LP, the
person for BIWI): a group's side is decided by hashing its key with the seed, so it never
changes when unrelated samples are added.

BIWI protocol 2 (``held_out_sequences`` > 0): the test list is that many sequences of the training
folder, drawn with the seed, and the rest is split into train/val by person as above;
``split.json`` records the sequences of each side and the people on both (four BIWI people were
recorded twice, so a split by sequence is not one by person, as in the published protocol).

Outputs (one folder, written atomically): ``train.txt``, ``val.txt``, ``test.txt`` (one sample
entry per line: for 300W_LP and AFLW2000 its path without extension), ``skipped.tsv``
(sample, dataset, reason) and ``angles.tsv`` (the angles of every sample with valid labels, in
range or not, so the analysis need not read them again).
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from headpose.datasets import registry
from headpose.datasets.labels import angles_within
from headpose.datasets.mat import ANNOTATION_SUFFIX, IMAGE_SUFFIX
from headpose.datasets.registry import Sample, entries_of, resolve
from headpose.errors import HeadposeError
from headpose.io.files import atomic_directory, write_json, write_text
from headpose.io.lists import LIST_MAX_BYTES, listable_name
from headpose.io.parallel import map_with_progress
from headpose.io.text import read_text_file

ANGLE_COLUMNS = ("yaw_deg", "pitch_deg", "roll_deg")
ANGLES_HEADER = "\t".join(("sample", "dataset", *ANGLE_COLUMNS))
SKIPPED_HEADER = "sample\tdataset\treason"


@dataclass(frozen=True)
class SampleCheck:
    """The outcome of checking one sample: its angles (if its labels are valid) and a problem."""

    sample: Sample
    angles_deg: tuple[float, float, float] | None  # (yaw, pitch, roll); None: no valid labels
    problem: str | None  # why the sample is unusable; None when it is usable

    @property
    def path(self) -> str:
        """The list entry (for 300W_LP and AFLW2000: dataset root / stem, no extension)."""
        return self.sample.entry


@dataclass
class DatasetScan:
    """All pairs found in one dataset folder, checked."""

    name: str  # "train" or "test"
    checks: list[SampleCheck]
    unpaired: list[SampleCheck] = field(default_factory=list)  # a .jpg or .mat without its twin


@dataclass
class FileLists:
    """The lists the stage writes, plus what was skipped and why."""

    train: list[str]
    val: list[str]
    test: list[str]
    skipped: list[tuple[str, str, str]]  # (sample, dataset, reason)
    angles: list[tuple[str, str, tuple[float, float, float]]]  # (sample, dataset, angles_deg)
    metrics: dict
    split: dict | None = None  # held-out sequences (BIWI protocol 2), written as split.json


def _image_problem(image_path: str) -> str | None:
    """Cheap decode check (JPEG decoded at 1/8 scale); None when the image is readable."""
    try:
        data = np.fromfile(image_path, dtype=np.uint8)
    except OSError as error:
        return f"image not readable: {error.strerror}"
    try:
        decoded = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) if data.size else None
    except cv2.error:
        decoded = None
    kind = "JPEG" if image_path.lower().endswith(IMAGE_SUFFIX) else "image"
    return None if decoded is not None else f"image is not a decodable {kind}"


def check_sample(entry: str) -> SampleCheck:
    """Validate one sample entry with its format; never raises for bad data."""
    sample = resolve(entry)
    if not listable_name(entry):
        return SampleCheck(
            sample, None, "the file name holds a line break or tab (lists are lines)"
        )
    try:
        labels = sample.header()
    except HeadposeError as error:
        message = str(error).removeprefix(f"{entry}{ANNOTATION_SUFFIX}: ")
        return SampleCheck(sample, None, message.removeprefix(f"{entry}: "))
    image = sample.image_file()
    return SampleCheck(sample, labels.angles_deg, _image_problem(image) if image else None)


def scan_dataset(
    root: str | os.PathLike,
    name: str,
    default_format: str,
    workers: int = 1,
    frame_list: str | os.PathLike | None = None,
) -> DatasetScan:
    """Find and check every sample in ``root`` (its format: :func:`dataset_format`, with
    ``default_format`` for a ``.jpg`` + ``.mat`` folder); raise a HeadposeError if it holds
    none. ``frame_list``: the frames (and face boxes) to take, for a format that has them."""
    dataset_format = registry.dataset_format(root, default_format)
    options = {} if frame_list is None else {"frame_list": Path(frame_list)}
    if options and "frame_list" not in inspect.signature(dataset_format.scan).parameters:
        raise HeadposeError(
            f"{root}: a frame list applies to BIWI folders, not {dataset_format.name}"
        )
    found = dataset_format.scan(Path(root), **options)
    if not found.entries:
        expected = (
            dataset_format.description
            if dataset_format.recognises(Path(root))
            else f"{dataset_format.description}, nor any other registered format's layout: "
            + registry.describe_layouts(besides=dataset_format)
        )
        raise HeadposeError(
            f"{name} data folder {root} holds no samples ({expected}); check "
            "train_data/test_data in params.yaml"
        )
    unpaired = [SampleCheck(resolve(entry), None, reason) for entry, reason in found.unpaired]
    checks = map_with_progress(check_sample, found.entries, workers, f"checking {name} samples")
    return DatasetScan(name, checks, unpaired)


def _group_position(key: str, seed: int) -> float:
    """A seeded hash of a group key, uniform in [0, 1): below val_fraction means validation."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_train_val(
    samples: list[Sample], seed: int, val_fraction: float
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into (train, val) by group, keeping every group on one side.

    With ``val_fraction > 0`` and at least two groups, neither side is left empty: if the hash
    put every group on one side, the group nearest the threshold moves over.
    """
    groups = [sample.group_key() for sample in samples]
    keys = sorted(set(groups))
    positions = {key: _group_position(key, seed) for key in keys}
    val_keys = {key for key in keys if positions[key] < val_fraction}
    if val_fraction > 0 and len(keys) >= 2:
        if not val_keys:
            val_keys = {min(keys, key=positions.__getitem__)}
        elif len(val_keys) == len(keys):
            val_keys.remove(max(keys, key=positions.__getitem__))
    train = [sample for sample, key in zip(samples, groups, strict=True) if key not in val_keys]
    val = [sample for sample, key in zip(samples, groups, strict=True) if key in val_keys]
    return train, val


def usable_samples(
    scan: DatasetScan, max_angle_deg: float
) -> tuple[list[Sample], list[tuple], Counter]:
    """Usable samples of a scan, the skipped ones with reasons, and counts per kind of skip."""
    skipped = [(check.path, scan.name, check.problem) for check in scan.unpaired]
    counts = Counter(unpaired=len(scan.unpaired))
    usable = []
    for check in scan.checks:
        if check.problem is not None:
            skipped.append((check.path, scan.name, check.problem))
            counts["invalid"] += 1
        elif not angles_within(check.angles_deg, max_angle_deg):
            yaw, pitch, roll = check.angles_deg
            reason = (
                f"an angle beyond +-{max_angle_deg:g} deg "
                f"(yaw {yaw:.1f}, pitch {pitch:.1f}, roll {roll:.1f})"
            )
            skipped.append((check.path, scan.name, reason))
            counts["out_of_range"] += 1
        else:
            usable.append(check.sample)
    return usable, skipped, counts


def _require_usable(
    usable: list[Sample], skipped: list[tuple], counts: Counter, root, name
) -> None:
    """Raise when a dataset has no usable sample, saying why the samples were skipped."""
    if usable:
        return
    kinds = ", ".join(
        f"{count} {kind.replace('_', ' ')}" for kind, count in counts.items() if count
    )
    example = f"{skipped[-1][0]}: {skipped[-1][2]}" if skipped else "none"
    raise HeadposeError(
        f"no usable {name} samples in {root}: all were skipped ({kinds}); e.g. {example}"
    )


def held_out_split(
    scan: DatasetScan, count: int, seed: int
) -> tuple[DatasetScan, DatasetScan, dict]:
    """BIWI protocol 2: ``count`` of the scan's sequences, drawn with ``seed``, as the test set.

    Returns (training scan, test scan, the split written down: the sequences on each side and
    the people recorded on both, since four BIWI people were recorded twice). The draw is over
    every sequence found, usable samples or not, so a damaged frame never changes it.
    """
    checks = scan.checks + scan.unpaired
    kinds = {check.sample.format.name for check in checks}
    sequences = {check.sample.sequence() for check in checks}
    if None in sequences:
        raise HeadposeError(
            f"held_out_sequences needs a train_data recorded in sequences (BIWI); "
            f"{', '.join(sorted(kinds))} samples have none"
        )
    ordered = sorted(sequences)
    if count >= len(ordered):
        raise HeadposeError(
            f"held_out_sequences is {count}, but train_data holds {len(ordered)} sequences: "
            "expected fewer, so that some remain for training"
        )
    test = set(np.random.default_rng(seed).choice(ordered, size=count, replace=False).tolist())

    def side(checks: list[SampleCheck], held_out: bool) -> list[SampleCheck]:
        return [c for c in checks if (c.sample.sequence() in test) == held_out]

    train_scan = DatasetScan("train", side(scan.checks, False), side(scan.unpaired, False))
    test_scan = DatasetScan("test", side(scan.checks, True), side(scan.unpaired, True))
    people = {
        name: {check.sample.group_key() for check in part.checks + part.unpaired}
        for name, part in (("train", train_scan), ("test", test_scan))
    }
    split = {
        "held_out_sequences": count,
        "seed": seed,
        "train_sequences": sorted(sequences - test),
        "test_sequences": sorted(test),
        "people_on_both_sides": sorted(people["train"] & people["test"]),
    }
    return train_scan, test_scan, split


def build_filelists(
    train_root: str | os.PathLike,
    test_root: str | os.PathLike,
    max_angle_deg: float,
    val_fraction: float,
    seed: int,
    workers: int = 1,
    held_out_sequences: int = 0,
) -> FileLists:
    """Scan, check, filter and split both datasets (the whole ``filelists`` stage but writing).
    With ``held_out_sequences`` (BIWI protocol 2), the test set is that many sequences of
    ``train_root`` (:func:`held_out_split`) and ``test_root`` is not read."""
    train_scan = scan_dataset(train_root, "train", "300w_lp", workers=workers)
    split = None
    if held_out_sequences:
        train_scan, test_scan, split = held_out_split(train_scan, held_out_sequences, seed)
    else:
        test_scan = scan_dataset(test_root, "test", "aflw2000", workers=workers)
    train_usable, train_skipped, train_counts = usable_samples(train_scan, max_angle_deg)
    test_usable, test_skipped, test_counts = usable_samples(test_scan, max_angle_deg)
    _require_usable(train_usable, train_skipped, train_counts, train_root, "training")
    test_source = f"the held-out sequences of {train_root}" if split else test_root
    _require_usable(test_usable, test_skipped, test_counts, test_source, "test")
    train, val = split_train_val(train_usable, seed, val_fraction)
    metrics = {
        name: {
            "pairs_found": len(scan.checks),
            "unpaired_files": counts["unpaired"],
            "skipped_invalid": counts["invalid"],
            "skipped_out_of_range": counts["out_of_range"],
            "usable": len(usable),
        }
        for name, scan, usable, counts in (
            ("train", train_scan, train_usable, train_counts),
            ("test", test_scan, test_usable, test_counts),
        )
    }
    metrics["train"].update(
        groups=len({sample.group_key() for sample in train_usable}), train=len(train), val=len(val)
    )
    angles = [
        (check.path, scan.name, check.angles_deg)
        for scan in (train_scan, test_scan)
        for check in scan.checks
        if check.angles_deg is not None
    ]
    if split:
        metrics["split"] = split
    train, val, test = (entries_of(part) for part in (train, val, test_usable))
    return FileLists(train, val, test, train_skipped + test_skipped, angles, metrics, split)


def _lines(rows: list[str]) -> str:
    return "".join(f"{row}\n" for row in rows)


def _clean(text: str) -> str:
    """One TSV field: no tabs or line breaks."""
    return " ".join(text.split())


def angles_table_text(rows: list[tuple[str, str, tuple[float, float, float]]]) -> str:
    """``angles.tsv`` content: sample, dataset, yaw_deg, pitch_deg, roll_deg (header first)."""
    body = [
        "\t".join((sample, dataset, *(f"{angle:.6f}" for angle in angles)))
        for sample, dataset, angles in rows
    ]
    return _lines([ANGLES_HEADER, *body])


def read_angles_table(path: str | os.PathLike) -> list[tuple[str, str, np.ndarray]]:
    """Read an ``angles.tsv``: rows of (sample, dataset, array of yaw, pitch, roll degrees)."""
    lines = read_text_file(path, LIST_MAX_BYTES, "angles table").splitlines()
    if not lines or lines[0] != ANGLES_HEADER:
        raise HeadposeError(f"{path}: expected a header line {ANGLES_HEADER!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 5:
            raise HeadposeError(f"{path}:{number}: expected 5 tab-separated fields")
        try:
            rows.append((fields[0], fields[1], np.array([float(v) for v in fields[2:]])))
        except ValueError:
            raise HeadposeError(f"{path}:{number}: angles are not numbers") from None
    return rows


def skipped_table_text(rows: list[tuple[str, str, str]]) -> str:
    """``skipped.tsv`` content: sample, dataset, reason (header first)."""
    return _lines([SKIPPED_HEADER, *("\t".join(map(_clean, row)) for row in rows)])


def list_text(samples: list[str]) -> str:
    """A file list's content."""
    return _lines(samples)


def write_filelists(lists: FileLists, folder: str | os.PathLike) -> None:
    """Write the lists, ``skipped.tsv`` and ``angles.tsv`` into ``folder`` atomically."""
    with atomic_directory(folder) as temp:
        for name, samples in (("train", lists.train), ("val", lists.val), ("test", lists.test)):
            write_text(temp / f"{name}.txt", list_text(samples))
        write_text(temp / "skipped.tsv", skipped_table_text(lists.skipped))
        write_text(temp / "angles.tsv", angles_table_text(lists.angles))
        if lists.split:
            write_json(temp / "split.json", lists.split)
