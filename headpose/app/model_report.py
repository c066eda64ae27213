"""Several models in one report: each model scored on the same test samples under every crop
a reader needs to place it (``headpose evaluate A B ... --data X``).

For every model, one row per crop:

* ``published``: the data's published test crop, the ``hopenet`` protocol
  (:data:`headpose.crops.protocols.DEFAULT_PROTOCOL`), under which published AFLW2000 tables
  were measured;
* ``tight``: the ``visible`` protocol's crop of the visible landmarks;
* ``own``: the crop protocol the model records it was trained on (its checkpoint's meta or its
  file's metadata), when it is neither of those;
* ``given``: the protocol of ``--crop-protocol``, when it is none of those (one model scored
  with ``--compare-protocols`` also gets a row, ``other``, for each further registered protocol);
* ``detector``: the crop ``headpose predict`` makes, from the face a detector finds. Each image
  is decoded once and the detector run once; the detected face whose box holds the centre of
  the sample's annotated face (its visible-landmark box, or its stored crop box), the nearest
  of them, is cropped for each model by :meth:`headpose.app.api.HeadPoseModel.crops` (the
  detector's calibration, then the model's crop protocol, as predict frames faces) and predicted
  by :meth:`~headpose.app.api.HeadPoseModel.predict_crops`. Samples where no such face is found
  are left out of this row (its ``n`` says how many are scored).

A dataset whose samples store their crop box (BIWI, FSA-Net ``.npz``) has no protocol crops: its
stored box gives one ``stored box`` row, beside the detector's.

Each model is an :class:`~headpose.inference.loading.LoadedModel` its caller opened by the one
opener, so each is fed at its own input size and normalisation; the protocol rows are
:func:`headpose.evaluation.evaluate.evaluate` (the crop store makes each model's crops at its
size). The metric columns are not fixed here: they are every metric of the whole set the
evaluation's result holds (:func:`metric_columns`), so a metric added to
:func:`headpose.evaluation.metrics.error_metrics` becomes a column of the table and a key of the
JSON rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from headpose.app.api import HeadPoseModel, detected_faces
from headpose.app.detect import FaceBox, FaceDetector
from headpose.crops.crop import Box
from headpose.crops.protocols import DEFAULT_PROTOCOL, CropProtocol, get_protocol
from headpose.crops.protocols.stored_box import STORED_BOX_NAME
from headpose.datasets.labels import Labels
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import evaluate
from headpose.evaluation.metrics import NEAR_FRONTAL_LIMIT_DEG, PoseErrors, error_metrics
from headpose.inference.loading import LoadedModel

TIGHT_PROTOCOL: CropProtocol = get_protocol("visible", "the tight crop")
DETECTOR_CHUNK_IMAGES = 64  # images decoded, detected and cropped at a time for the detector row
NOT_FOUND = "no detected face holds the centre of the annotated face"
# Keys of an evaluation's metrics that are not metrics of the whole set: its subsets and the
# training-mean baseline (see :func:`metric_columns`).
SUBSET_MARKERS = (f"_within_{NEAR_FRONTAL_LIMIT_DEG}", f"_beyond_{NEAR_FRONTAL_LIMIT_DEG}")
BASELINE_PREFIX = "baseline_"


@dataclass(frozen=True)
class ReportModel:
    """One model of the report: the name its rows carry, and the model opened."""

    label: str
    loaded: LoadedModel


@dataclass(frozen=True)
class ReportRow:
    """One model under one crop: ``crop`` (published, tight, own, given, detector, stored box),
    ``crop_protocol`` (the protocol's name, or the detector's) and the evaluation's ``metrics``
    of that crop (:func:`headpose.evaluation.metrics.error_metrics`)."""

    model: str
    image_size: int
    crop: str
    crop_protocol: str
    metrics: dict

    @property
    def count(self) -> int:
        """How many samples the row scores."""
        return int(self.metrics["mae"]["count"])

    def columns(self) -> dict[str, float | None]:
        """The row's metric columns (:func:`metric_columns`)."""
        return metric_columns(self.metrics)

    def to_json(self) -> dict:
        """The row as the JSON report writes it."""
        return {
            "model": self.model,
            "image_size": self.image_size,
            "crop": self.crop,
            "crop_protocol": self.crop_protocol,
            "count": self.count,
            **self.columns(),
        }


@dataclass(frozen=True)
class ModelReport:
    """The rows of every model (model by model, crops in the order of the module docstring),
    the test set they were scored on and the detector's share of found faces."""

    source: str
    samples: int
    real_aflw2000: bool
    rows: list[ReportRow]
    detector: str | None = None
    detector_found: int = 0

    def to_json(self) -> dict:
        """Plain JSON: the test set, the detector and one row per model x crop."""
        return {
            "data": self.source,
            "samples": self.samples,
            "real_aflw2000": self.real_aflw2000,
            "detector": self.detector,
            "detector_found": self.detector_found if self.detector else None,
            "rows": [row.to_json() for row in self.rows],
        }


def metric_columns(metrics: dict) -> dict[str, float | None]:
    """The columns of one evaluation's ``metrics``: every summary of the whole set (a value that
    is a dict with a ``count``, not a subset such as ``mae_within_30`` nor the training-mean
    baseline), one column per number of it: ``{key}_{name}`` (``mae_yaw`` ... ``mae_mean``), or
    ``key`` alone for a summary that holds only a ``mean``."""
    columns: dict[str, float | None] = {}
    for key, summary in metrics.items():
        if not isinstance(summary, dict) or "count" not in summary:
            continue
        if key.startswith(BASELINE_PREFIX) or any(marker in key for marker in SUBSET_MARKERS):
            continue
        numbers = {name: value for name, value in summary.items() if name != "count"}
        if list(numbers) == ["mean"]:
            columns[key] = numbers["mean"]
        else:
            columns.update({f"{key}_{name}": value for name, value in numbers.items()})
    return columns


def crop_role(
    protocol: CropProtocol, loaded: LoadedModel, given: CropProtocol | None = None
) -> str:
    """What a protocol crop is to the report: ``published``, ``tight``, the model's ``own``,
    the one ``given`` by name (``--crop-protocol``), or ``other``."""
    if protocol == DEFAULT_PROTOCOL:
        return "published"
    if protocol == TIGHT_PROTOCOL:
        return "tight"
    if protocol == loaded.description.crop_protocol:
        return "own"
    return "given" if protocol == given else "other"


def report_crops(loaded: LoadedModel, given: CropProtocol | None = None) -> list[CropProtocol]:
    """The protocols a model is scored under: published first, then tight, the model's own and
    the one ``given``, each once."""
    crops = [DEFAULT_PROTOCOL, TIGHT_PROTOCOL, loaded.description.crop_protocol, given]
    return list(dict.fromkeys(protocol for protocol in crops if protocol is not None))


def evaluation_rows(
    label: str, loaded: LoadedModel, metrics: dict, given: CropProtocol | None = None
) -> list[ReportRow]:
    """The rows of one evaluation's ``metrics`` (:func:`headpose.evaluation.evaluate.evaluate`):
    its crop protocol's, then each of its ``other_protocols``; one ``stored box`` row for a set
    whose samples store their crop."""
    size = loaded.description.image_size
    if metrics["crop_protocol"] == STORED_BOX_NAME:
        return [ReportRow(label, size, "stored box", STORED_BOX_NAME, metrics)]
    scored = {metrics["crop_protocol"]: metrics, **metrics.get("other_protocols", {})}
    return [
        ReportRow(label, size, crop_role(get_protocol(name), loaded, given), name, protocol_metrics)
        for name, protocol_metrics in scored.items()
    ]


def protocol_rows(
    model: ReportModel,
    samples: list[Sample],
    source: str,
    given: CropProtocol | None = None,
    workers: int = 0,
) -> tuple[list[ReportRow], bool]:
    """``model``'s rows under each crop of :func:`report_crops` (one evaluation, the others as
    its ``other_protocols``), and whether the samples are the real AFLW2000's protocol."""
    first, *others = report_crops(model.loaded, given)
    result = evaluate(
        model.loaded,
        samples,
        source,
        crop_protocol=first,
        other_protocols=tuple(others),
        workers=workers,
    )
    rows = evaluation_rows(model.label, model.loaded, result.metrics, given)
    return rows, result.metrics["real_aflw2000"]


# --- The detector's crop ------------------------------------------------------------------------


def annotated_centre(labels: Labels) -> tuple[float, float]:
    """The centre, in pixel coordinates, of the face a sample annotates: its visible-landmark box
    (the tight protocol's face box), or its stored crop box."""
    box: Box = labels.crop_box if not labels.has_landmarks else TIGHT_PROTOCOL.face_box(labels)
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def annotated_face(faces: Sequence[FaceBox], labels: Labels) -> FaceBox | None:
    """Of the detected ``faces`` whose box holds the centre of the annotated face, the one whose
    centre is nearest it (None when no box holds it)."""
    x, y = annotated_centre(labels)

    def distance(face: FaceBox) -> float:
        return math.hypot((face.x_min + face.x_max) / 2 - x, (face.y_min + face.y_max) / 2 - y)

    holding = [
        face for face in faces if face.x_min <= x <= face.x_max and face.y_min <= y <= face.y_max
    ]
    return min(holding, key=distance, default=None)


def _chunks(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def detector_errors(
    models: Sequence[ReportModel],
    samples: list[Sample],
    detector: FaceDetector,
    chunk_images: int = DETECTOR_CHUNK_IMAGES,
) -> tuple[list[PoseErrors], list[tuple[str, str]]]:
    """Each model's errors on the samples where ``detector`` finds the annotated face, cropped
    and predicted as ``headpose predict`` does (module docstring), and the samples left out with
    the reason. Each image is decoded and searched once, ``chunk_images`` at a time."""
    if chunk_images < 1:
        raise HeadposeError(f"chunk of {chunk_images} images: expected at least 1")
    predictors = [HeadPoseModel(model.loaded) for model in models]
    stems: list[str] = []
    true_deg: list[tuple[float, float, float]] = []
    predicted: list[list[np.ndarray]] = [[] for _ in models]
    missed: list[tuple[str, str]] = []
    progress = tqdm(total=len(samples), desc=f"detector crop ({detector.name})", unit="image")
    for chunk in _chunks(samples, chunk_images):
        found: list[tuple[np.ndarray, FaceBox]] = []
        for sample in chunk:
            image, labels = sample.read()
            face = annotated_face(detected_faces(detector, image), labels)
            if face is None:
                missed.append((str(sample), NOT_FOUND))
                continue
            found.append((image, face))
            stems.append(str(sample))
            true_deg.append(labels.angles_deg)
        progress.update(len(chunk))
        if not found:
            continue
        for index, predictor in enumerate(predictors):
            crops = np.concatenate(
                [predictor.crops(image, [face], detector.calibration) for image, face in found]
            )
            predicted[index].append(predictor.predict_crops(crops))
    progress.close()
    true = np.asarray(true_deg, dtype=np.float64).reshape(-1, 3)
    errors = [
        PoseErrors(list(stems), true, np.concatenate(angles) if angles else np.zeros((0, 3)))
        for angles in predicted
    ]
    return errors, missed


# --- The report ---------------------------------------------------------------------------------


def score_models(
    models: Sequence[ReportModel],
    samples: list[Sample],
    source: str,
    *,
    detector: FaceDetector | None = None,
    given: CropProtocol | None = None,
    workers: int = 0,
) -> tuple[ModelReport, list[tuple[str, str]]]:
    """Score every model on ``samples`` (named ``source``) under each crop (module docstring;
    the detector's only when a ``detector`` is given); return the report and the samples the
    detector row leaves out, with the reason."""
    if not models:
        raise HeadposeError("the report needs at least one model")
    by_model: list[list[ReportRow]] = []
    real_aflw2000 = False
    for model in models:
        rows, real_aflw2000 = protocol_rows(model, samples, source, given, workers)
        by_model.append(rows)
    missed: list[tuple[str, str]] = []
    if detector is not None:
        errors, missed = detector_errors(models, samples, detector)
        for rows, model, model_errors in zip(by_model, models, errors, strict=True):
            size = model.loaded.description.image_size
            metrics = error_metrics(model_errors, None)
            rows.append(ReportRow(model.label, size, "detector", detector.name, metrics))
    report = ModelReport(
        source,
        len(samples),
        real_aflw2000,
        [row for rows in by_model for row in rows],
        None if detector is None else detector.name,
        len(samples) - len(missed),
    )
    return report, missed


def model_labels(paths: Sequence[str]) -> list[str]:
    """The names of the models in the report: their file names, or the paths as given where two
    files share a name; a path given twice is one line."""
    texts = [str(path) for path in paths]
    for index, text in enumerate(texts):
        if text in texts[:index]:
            raise HeadposeError(f"model {text} is given twice; give each model once")
    names = [text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] for text in texts]
    return names if len(set(names)) == len(names) else texts


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.2f}"


def format_model_report(report: ModelReport) -> str:
    """The printed table: a header naming the test set (and the detector's found share), then
    per model one row per crop, a column per metric (degrees) and the samples scored."""
    protocol = " (real AFLW2000-3D, 1969-image protocol)" if report.real_aflw2000 else ""
    lines = [f"test set {report.source}: {report.samples} samples{protocol}"]
    if report.detector is not None:
        lines.append(
            f"detector crop: {report.detector} as headpose predict frames its faces; it found the "
            f"annotated face in {report.detector_found} of {report.samples} samples, the rows "
            "score those"
        )
    names = list(dict.fromkeys(name for row in report.rows for name in row.columns()))
    model_width = max([len("model"), *(len(row.model) for row in report.rows)]) + 2
    crops = [f"{row.crop} ({row.crop_protocol})" for row in report.rows]
    crop_width = max([len("crop"), *(len(crop) for crop in crops)]) + 2
    widths = [max(len(name) + 2, 9) for name in names]
    header = f"{'model':<{model_width}}{'px':>5}  {'crop':<{crop_width}}"
    header += "".join(f"{name:>{width}}" for name, width in zip(names, widths, strict=True))
    lines += ["metrics in degrees", header + f"{'n':>7}"]
    previous = None
    for row, crop in zip(report.rows, crops, strict=True):
        shown = row.model if row.model != previous else ""
        previous = row.model
        columns = row.columns()
        line = f"{shown:<{model_width}}{row.image_size:>5}  {crop:<{crop_width}}"
        line += "".join(
            _cell(columns.get(name), width) for name, width in zip(names, widths, strict=True)
        )
        lines.append(line + f"{row.count:>7}")
    return "\n".join(lines)
