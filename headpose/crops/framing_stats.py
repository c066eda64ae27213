"""Framing statistics of sample lists: how faces sit in the crops that training and evaluation make.

The analyze stage reports, beside the angle percentiles, where the face lies in the network's
input (:func:`headpose.crops.framing.face_framing`: its scale and its centre's offset) for the
training list, 300W_AUG and the test list, under the ``crop_protocol`` and ``image_size`` of
``params.yaml``:

* training lists (:func:`training_framing`): the crops one training epoch draws, item by item as
  :func:`headpose.crops.training_draws.draw_item` draws them (a flipped crop shows the face
  mirrored, so its x offset is negated), seeded by the data's ``seed`` so a training-seed sweep
  does not re-run the analysis; ``protocol``: the crop protocol's draws alone, ``used``: with the
  framing augmentation as configured (the same numbers when it is off);
* the test list (:func:`evaluation_framing`): the fixed evaluation crop.

The face is always the box of the visible landmarks (what a face is, whatever box a protocol
frames). Each list is measured on at most :data:`MAX_SAMPLES` samples, chosen by ``seed``
(percentiles over that many move by about 0.01 of a crop). :func:`framing_distributions` adds
whether the test framing lies inside the training framing's 5-95 % range, dimension by dimension.
"""

from __future__ import annotations

import numpy as np

from headpose.crops.framing import FRAMING_NAMES, NO_FRAMING, FramingAugmentation, face_framing
from headpose.crops.protocols import CropProtocol
from headpose.crops.protocols.visible import Visible
from headpose.crops.training_draws import draw_item
from headpose.datasets.analyze import percentile_summary
from headpose.datasets.registry import Sample
from headpose.io.parallel import map_with_progress

MAX_SAMPLES = 5000
# What a face is, whatever box a protocol frames: the box of its visible landmarks (in pixels).
FACE: CropProtocol = Visible()
STATS_EPOCH = 1  # the training epoch whose draws are measured
# Why a framing section holds no numbers (measure_framing found a list without landmark samples).
UNMEASURED = "a list holds no landmark sample (stored-box datasets such as BIWI have no face box)"


def _training_item(task: tuple) -> list[tuple[float, float, float]]:
    """The framing of one sample's training crop under each of the task's augmentations."""
    sample, index, seed, image_size, protocol, augmentations = task
    labels = sample.header()
    box, face = protocol.face_box(labels), FACE.face_box(labels)
    rows = []
    for framing in augmentations:
        draw = draw_item((seed, STATS_EPOCH, index), box, image_size, protocol, framing)
        scale, offset_x, offset_y = face_framing(face, draw.rectangle)
        rows.append((scale, -offset_x if draw.flipped else offset_x, offset_y))
    return rows


def _evaluation_item(task: tuple) -> tuple[float, float, float]:
    sample, image_size, protocol = task
    labels = sample.header()
    rectangle = protocol.evaluation_rectangle(protocol.face_box(labels), image_size)
    return face_framing(FACE.face_box(labels), rectangle)


def sampled_indices(count: int, seed: int, limit: int = MAX_SAMPLES) -> list[int]:
    """The positions of a list of ``count`` samples that are measured: all, or ``limit`` of them
    chosen by ``seed``, in list order."""
    if count <= limit:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, limit, replace=False).tolist())


def training_framing(
    samples: list[Sample],
    image_size: int,
    protocol: CropProtocol,
    augmentations: tuple[FramingAugmentation, ...],
    seed: int,
    workers: int = 0,
) -> list[np.ndarray]:
    """Per augmentation, (N, 3) scale, offset x, offset y of the training crops drawn for (at
    most :data:`MAX_SAMPLES` of) ``samples`` (each sample is read once)."""
    tasks = [
        (samples[index], index, seed, image_size, protocol, augmentations)
        for index in sampled_indices(len(samples), seed)
    ]
    rows = map_with_progress(_training_item, tasks, workers, "framing of training crops")
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(augmentations), 3)
    return [table[:, column] for column in range(len(augmentations))]


def evaluation_framing(
    samples: list[Sample], image_size: int, protocol: CropProtocol, seed: int, workers: int = 0
) -> np.ndarray:
    """(N, 3) scale, offset x, offset y of the evaluation crops of (at most
    :data:`MAX_SAMPLES` of) ``samples``."""
    indices = sampled_indices(len(samples), seed)
    tasks = [(samples[index], image_size, protocol) for index in indices]
    rows = map_with_progress(_evaluation_item, tasks, workers, "framing of evaluation crops")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def landmark_samples(samples: list[Sample]) -> list[Sample]:
    """The samples framed by landmarks (a stored-box sample, BIWI's or an ``.npz``'s, has no
    face box the framing could be measured against)."""
    return [sample for sample in samples if not sample.stores_crop_box]


def measure_framing(
    training_lists: dict[str, list[Sample]],
    test_samples: list[Sample],
    image_size: int,
    protocol: CropProtocol,
    framing: FramingAugmentation,
    seed: int,
    workers: int = 0,
) -> dict[str, dict[str, np.ndarray]] | None:
    """{dataset: {"protocol"|"used": (N, 3) framing}} for each training list and "test", of
    their landmark samples (:func:`landmark_samples`); None when a list has none."""
    lists = {**training_lists, "test": test_samples}
    lists = {name: landmark_samples(samples) for name, samples in lists.items()}
    if not all(lists.values()):
        return None
    measured: dict[str, dict[str, np.ndarray]] = {}
    augmentations = (NO_FRAMING, framing) if framing.enabled else (NO_FRAMING,)
    for name, samples in lists.items():
        if name == "test":
            used = evaluation_framing(samples, image_size, protocol, seed, workers)
            measured[name] = {"used": used}
            continue
        tables = training_framing(samples, image_size, protocol, augmentations, seed, workers)
        measured[name] = {"protocol": tables[0], "used": tables[-1]}
    return measured


def framing_distributions(
    measured: dict[str, dict[str, np.ndarray]] | None, reference: str, settings: dict
) -> dict:
    """The ``framing`` section of ``metrics/distributions.json``: ``settings`` (what was
    measured under), the percentiles of each set, and ``test_inside`` ``reference`` (the list
    training reads): per dimension whether the test set's 5-95 % range lies inside the
    reference's and the share of test samples inside it, and ``inside`` for all three."""
    if measured is None:  # see measure_framing
        return {**settings, "measured": False, "reason": UNMEASURED}
    section: dict = {**settings, "sampled_at_most": MAX_SAMPLES}
    for dataset, subsets in measured.items():
        section[dataset] = {
            subset: percentile_summary(values, FRAMING_NAMES) for subset, values in subsets.items()
        }
    train, test = measured[reference]["used"], measured["test"]["used"]
    verdict: dict = {"reference": reference}
    for column, name in enumerate(FRAMING_NAMES):
        low, high = np.percentile(train[:, column], (5, 95))
        test_low, test_high = np.percentile(test[:, column], (5, 95))
        share = np.mean((test[:, column] >= low) & (test[:, column] <= high))
        verdict[name] = {
            "inside": bool(low <= test_low and test_high <= high),
            "test_share_inside": round(float(share), 3),
        }
    verdict["inside"] = all(verdict[name]["inside"] for name in FRAMING_NAMES)
    section["test_inside"] = verdict
    return section


def inside_line(section: dict) -> str:
    """One line: whether the test framing lies inside the training framing's 5-95 % range."""
    if section.get("measured") is False:
        return f"framing not measured: {section['reason']}"
    verdict = section["test_inside"]
    reference = verdict["reference"]
    parts = []
    for name in FRAMING_NAMES:
        train, test = section[reference]["used"][name], section["test"]["used"][name]
        parts.append(
            f"{name} {test['p5']:.2f}..{test['p95']:.2f} in {train['p5']:.2f}..{train['p95']:.2f}"
            f" {'yes' if verdict[name]['inside'] else 'NO'} "
            f"({verdict[name]['test_share_inside']:.0%} of test faces inside)"
        )
    answer = "inside" if verdict["inside"] else "NOT inside"
    return (
        f"test framing (5-95 %) {answer} the {reference} training framing's 5-95 % range: "
        + "; ".join(parts)
    )
