"""The framing sweep: how much a model loses when faces are framed unlike its training crops.

A detector's box, or the published AFLW2000 crop (its box about 1.7 times the side of the
``visible`` protocol's on the real AFLW2000, the centre square the network sees about 1.5 times),
shows a model its faces smaller, larger or off centre. This module owns measuring that on a test
set: every sample is cut under a grid of **framing conditions** and scored through the one
inference path (:func:`headpose.inference.batches.predict_angles`) and the metrics of
:mod:`headpose.evaluation.metrics`.

The axis of the sweep is the ``visible`` protocol's evaluation crop
(:mod:`headpose.crops.protocols.visible`): its rectangle is the reference, "1.0x". A condition
``(scale, shift_x, shift_y)`` grows that rectangle ``scale`` times about its centre and moves the
face by ``shift_x``, ``shift_y`` crop sides (:func:`headpose.crops.framing.reframe`); its pixels are
cut exactly as the ``visible`` protocol cuts its crops (rounded outwards, black outside the image,
resized to a square), so the condition ``(1, 0, 0)`` is the visible protocol's evaluation crop
itself. Every scale is measured with the face centred and, for every non-zero shift, moved right,
left, down and up.

On the same axis the sweep reports where the published ``hopenet`` evaluation crop falls: the
median over the samples of its side (the geometric mean of width and height) over the reference
rectangle's side (:func:`published_crop_scale`).

Images are decoded once and processed in chunks of :data:`CHUNK_IMAGES`, so the pixels held do
not grow with the test set (only the angles do, three numbers per sample and condition); crops
are made lazily, one batch at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from headpose.crops.crop import Box, cut
from headpose.crops.framing import FramingDraw, reframe
from headpose.crops.protocols import CropProtocol
from headpose.crops.protocols.hopenet import HopeNet
from headpose.crops.protocols.visible import Visible
from headpose.datasets.labels import Labels
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError
from headpose.evaluation.metrics import (
    MAE_KEYS,
    ROTATION_ERROR_KEYS,
    absolute_errors_deg,
    mae_summary,
    rotation_errors_deg,
    rotation_summary,
)
from headpose.inference.batches import predict_angles
from headpose.inference.runtime import AngleFunction
from headpose.models.registry import Normalization
from headpose.params import MAX_FRAMING_SCALE

REFERENCE_PROTOCOL: CropProtocol = Visible()  # the crop protocol whose evaluation crop is "1.0x"
PUBLISHED_PROTOCOL: CropProtocol = HopeNet()  # the published crop, placed on that axis
DEFAULT_SCALES = (0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2)
DEFAULT_SHIFTS = (0.15,)
MAX_SHIFT = 0.5  # crop sides: a face moved further would leave the crop's centre outside it
# The scales a sweep measures: a crop's canvas grows with the square of its scale (1e9 would ask
# for exabytes); from a face filling a tenth of the reference crop's side to the loosest framing
# training draws (params.yaml's framing_scale) and twice that.
SCALE_RANGE = (0.1, 2 * MAX_FRAMING_SCALE)
CHUNK_IMAGES = 128  # images decoded at a time
SWEEP_BATCH_SIZE = 64


# --- Conditions ---------------------------------------------------------------------------------


def _number(value: object, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise HeadposeError(f"framing {what} {value!r}: expected a number") from None


def scale_in_range(scale: float) -> bool:
    """Whether a sweep measures ``scale``: a number in :data:`SCALE_RANGE` (NaN is not)."""
    return SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]


SCALE_EXPECTED = f"a number from {SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g}"


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """The distinct ``scales`` in ascending order, 1.0 (the reference) always among them; a
    HeadposeError for a scale outside :data:`SCALE_RANGE`."""
    checked = {_number(scale, "scale") for scale in scales}
    for scale in checked:
        if not scale_in_range(scale):
            raise HeadposeError(f"framing scale {scale:g}: expected {SCALE_EXPECTED}")
    return tuple(sorted(checked | {1.0}))


def check_shifts(shifts: Sequence[float]) -> tuple[float, ...]:
    """The distinct non-zero ``shifts`` in ascending order (shift 0 is always measured); a
    HeadposeError for a shift outside [0, :data:`MAX_SHIFT`]."""
    checked = {_number(shift, "shift") for shift in shifts}
    for shift in checked:
        if not 0 <= shift <= MAX_SHIFT:  # NaN fails too
            raise HeadposeError(f"framing shift {shift:g}: expected a number from 0 to {MAX_SHIFT}")
    return tuple(sorted(checked - {0.0}))


def sweep_conditions(scales: Sequence[float], shifts: Sequence[float]) -> list[FramingDraw]:
    """Every condition of a sweep, scale by scale: the face centred, then for each non-zero shift
    ``s`` (ascending) moved by ``(s, 0)``, ``(-s, 0)``, ``(0, s)``, ``(0, -s)`` crop sides."""
    conditions = []
    for scale in check_scales(scales):
        conditions.append(FramingDraw(scale))
        for shift in check_shifts(shifts):
            for shift_x, shift_y in ((shift, 0.0), (-shift, 0.0), (0.0, shift), (0.0, -shift)):
                conditions.append(FramingDraw(scale, shift_x, shift_y))
    return conditions


# --- Rectangles and pixels ----------------------------------------------------------------------


def rectangle_side(rectangle: Box) -> float:
    """The side of a rectangle as one number: the geometric mean of its width and height."""
    return math.sqrt((rectangle[2] - rectangle[0]) * (rectangle[3] - rectangle[1]))


def reference_rectangle(labels: Labels, image_size: int) -> Box:
    """The "1.0x" rectangle of a sample: the ``visible`` protocol's evaluation rectangle of the
    tight box of its visible landmarks (full-image pixel coordinates)."""
    face = REFERENCE_PROTOCOL.face_box(labels)  # the visible landmarks, in pixels
    return REFERENCE_PROTOCOL.evaluation_rectangle(face, image_size)


def published_crop_scale(labels: Labels, image_size: int) -> float:
    """Where the published ``hopenet`` evaluation crop of a sample falls on the sweep's axis:
    its side over the side of the sample's :func:`reference_rectangle`."""
    published = PUBLISHED_PROTOCOL.evaluation_rectangle(
        PUBLISHED_PROTOCOL.face_box(labels), image_size
    )
    return rectangle_side(published) / rectangle_side(reference_rectangle(labels, image_size))


def median_published_crop_scale(samples: Sequence[Sample], image_size: int) -> float:
    """The median of :func:`published_crop_scale` over ``samples`` (labels and image headers
    only: no pixel is decoded)."""
    if not samples:
        raise HeadposeError("no samples to measure the published crop's framing on")
    return float(
        np.median([published_crop_scale(sample.header(), image_size) for sample in samples])
    )


def framing_crop(image: np.ndarray, rectangle: Box, image_size: int) -> np.ndarray:
    """The pixels of ``rectangle`` at ``image_size`` x ``image_size``, cut as the ``visible``
    protocol cuts its crops (rounded outwards, black outside the image, resized to a square)."""
    return REFERENCE_PROTOCOL.finish(
        cut(image, REFERENCE_PROTOCOL.pixel_box(rectangle)), image_size, "eval"
    )


# --- The sweep ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FramingRow:
    """The MAEs, mean geodesic error and MAEV (degrees) of one framing condition over the
    sweep's samples."""

    scale: float
    shift_x: float
    shift_y: float
    mae_yaw: float
    mae_pitch: float
    mae_roll: float
    mae_mean: float
    count: int
    geodesic_mean: float
    maev_mean: float

    @property
    def shift(self) -> float:
        """How far the face is moved, in crop sides."""
        return max(abs(self.shift_x), abs(self.shift_y))


@dataclass(frozen=True)
class FramingSweep:
    """A sweep's rows (one per condition) and where the published crop falls on its axis."""

    rows: list[FramingRow]
    published_crop_scale: float
    image_size: int
    samples: int

    @property
    def scales(self) -> list[float]:
        """The measured scales, ascending."""
        return sorted({row.scale for row in self.rows})

    @property
    def shifts(self) -> list[float]:
        """The measured non-zero shift magnitudes, ascending."""
        return sorted({row.shift for row in self.rows} - {0.0})

    def direction_rows(self, scale: float, shift: float) -> list[FramingRow]:
        """The rows of ``scale`` whose face is moved by ``shift`` (one row for shift 0)."""
        rows = [row for row in self.rows if row.scale == scale and row.shift == shift]
        if not rows:
            raise HeadposeError(f"the sweep measured no scale {scale:g} at shift {shift:g}")
        return rows

    def mean_mae(self, scale: float, shift: float = 0.0) -> float:
        """The mean MAE at ``scale`` and ``shift``, averaged over the shift's directions."""
        return float(np.mean([row.mae_mean for row in self.direction_rows(scale, shift)]))

    def worst_mae(self, scale: float, shift: float) -> float:
        """The mean MAE of the worst direction at ``scale`` and ``shift``."""
        return max(row.mae_mean for row in self.direction_rows(scale, shift))

    def ratio_to_reference(self, scale: float, shift: float = 0.0) -> float:
        """:meth:`mean_mae` at ``scale`` and ``shift`` over the MAE of the reference crop
        (scale 1.0, face centred): "the MAE at 1.8x is 1.3 times that at 1.0x"."""
        reference = self.mean_mae(1.0)
        return self.mean_mae(scale, shift) / reference if reference > 0 else math.inf

    def to_json(self) -> dict:
        """Plain JSON: every row, the published crop's scale, the input size and sample count."""
        return {
            "reference": f"{REFERENCE_PROTOCOL} evaluation crop",
            "image_size": self.image_size,
            "samples": self.samples,
            "published_crop_scale": round(self.published_crop_scale, 4),
            "rows": [asdict(row) for row in self.rows],
        }


def _chunks(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def framing_sweep(
    predict: AngleFunction,
    samples: list[Sample],
    image_size: int,
    normalization: Normalization,
    scales: Sequence[float] = DEFAULT_SCALES,
    shifts: Sequence[float] = DEFAULT_SHIFTS,
    batch_size: int = SWEEP_BATCH_SIZE,
    device: torch.device | None = None,
    chunk_images: int = CHUNK_IMAGES,
) -> FramingSweep:
    """Score ``predict`` (a model at ``image_size`` px, inputs normalised by ``normalization`` on
    ``device``) on ``samples`` under every condition of ``scales`` x ``shifts``
    (:func:`sweep_conditions`); rows in that order. Each image is decoded once, ``chunk_images``
    at a time, and its crops made a batch of at most ``batch_size`` at a time."""
    if not samples:
        raise HeadposeError("the framing sweep needs at least one sample")
    without_landmarks = [sample for sample in samples if sample.stores_crop_box]
    if without_landmarks:
        raise HeadposeError(
            f"{without_landmarks[0]}: the framing sweep frames faces by their landmarks; "
            f"{without_landmarks[0].format.name} samples have a fixed crop box"
        )
    if batch_size < 1 or chunk_images < 1:
        raise HeadposeError(f"batch size {batch_size} and chunk {chunk_images}: expected >= 1")
    conditions = sweep_conditions(scales, shifts)
    condition_of_row: list[np.ndarray] = []  # filled as the batches are drawn
    published_scales: list[float] = []

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in _chunks(list(samples), chunk_images):
            images, labels = zip(*(sample.read() for sample in chunk), strict=True)
            references = [reference_rectangle(one, image_size) for one in labels]
            published_scales.extend(published_crop_scale(one, image_size) for one in labels)
            # float32 labels, as the crop store keeps them: the (1, 0, 0) row is then exactly the
            # visible protocol's evaluation
            angles = torch.tensor([one.angles_deg for one in labels], dtype=torch.float32)
            for index, condition in enumerate(conditions):
                for start in range(0, len(images), batch_size):
                    stop = min(start + batch_size, len(images))
                    crops = [
                        framing_crop(image, reframe(reference, condition), image_size)
                        for image, reference in zip(
                            images[start:stop], references[start:stop], strict=True
                        )
                    ]
                    condition_of_row.append(np.full(stop - start, index))
                    yield torch.from_numpy(np.stack(crops)), angles[start:stop]

    predicted, true = predict_angles(
        predict, batches(), normalization, description="framing sweep", device=device
    )
    rows_condition = np.concatenate(condition_of_row)
    absolute = absolute_errors_deg(predicted, true)
    rotation = rotation_errors_deg(predicted, true)
    rows = []
    for index, condition in enumerate(conditions):
        summary = mae_summary(absolute[rows_condition == index])
        rotation_means = rotation_summary(rotation[rows_condition == index])
        rows.append(
            FramingRow(
                condition.scale,
                condition.shift_x,
                condition.shift_y,
                *(summary[key.removeprefix("mae_")] for key in MAE_KEYS),
                summary["count"],
                *(rotation_means[key]["mean"] for key in ROTATION_ERROR_KEYS),
            )
        )
    return FramingSweep(rows, float(np.median(published_scales)), image_size, len(samples))


# --- Report -------------------------------------------------------------------------------------


def format_framing_sweep(sweep: FramingSweep) -> str:
    """The printed table: one row per scale; the mean MAE with the face centred and its ratio to
    the reference crop's, then for each shift the mean over its four directions and the worst."""
    header = f"{'scale':>7}{'centred':>10}{'vs 1.0x':>9}"
    for shift in sweep.shifts:
        header += f"{f'shift {shift:g}':>13}{'worst':>8}"
    lines = [
        f"framing sweep, {sweep.samples} samples at {sweep.image_size} px; 1.0x = the "
        f"{REFERENCE_PROTOCOL} evaluation crop, s x = s times its side",
        f"the published {PUBLISHED_PROTOCOL} evaluation crop frames these faces at "
        f"{sweep.published_crop_scale:.2f}x (median over samples)",
        "mean MAE (degrees): face centred, ratio to 1.0x; per shift (crop sides): mean of the 4 "
        "directions, worst",
        header,
    ]
    for scale in sweep.scales:
        line = f"{scale:6.2f}x{sweep.mean_mae(scale):10.2f}{sweep.ratio_to_reference(scale):8.2f}x"
        for shift in sweep.shifts:
            line += f"{sweep.mean_mae(scale, shift):13.2f}{sweep.worst_mae(scale, shift):8.2f}"
        lines.append(line)
    return "\n".join(lines)
