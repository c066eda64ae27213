"""The statistics of ``headpose compare``: seed groups, comparability, spread and paired intervals.

A :class:`Run` is one evaluated model: its params and its per-image absolute errors on the test
list. Runs whose params differ only in ``train_seed`` form a :class:`Group` (identical runs, the
same params, seed and per-image errors, as a workspace and the experiment it holds, count once);
a key added to params.yaml after a run was recorded counts, for that run, at the value that does
what its code did (:func:`recorded_params`).
All runs compared must have been evaluated on the same test images (names and true angles, and
the test-list hash and protocol keys they record): :func:`check_comparable` refuses otherwise,
naming what differs.

Per group: the runs' test MAE (yaw, pitch, roll and their mean), or with another
:data:`COMPARED_METRICS` entry the runs' mean geodesic error or MAEV, as mean and sample standard
deviation over runs. Against a baseline group: the difference of the mean error (the mean MAE,
or the mean geodesic error or MAEV) with a 95 % interval
from a paired bootstrap over test images and seeds (:func:`paired_bootstrap`): each replicate
draws the test images once with replacement (the same images for both groups: the pairing) and
each group's runs with replacement, and takes the difference of the two groups' mean error over
those draws; the interval is the replicates' 2.5th to 97.5th percentile. An interval that covers
0 is "not distinguishable". The bootstrap's own generator is seeded, so a report is
deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headpose.errors import HeadposeError
from headpose.evaluation.metrics import ROTATION_ERROR_KEYS
from headpose.geometry import ANGLE_NAMES

SEED_KEY = "train_seed"
METRIC_NAMES = (*ANGLE_NAMES, "mean")  # yaw, pitch, roll and their mean
# What ``headpose compare --metric`` compares: Euler MAE (default) or a rotation error.
COMPARED_METRICS = ("mae", *ROTATION_ERROR_KEYS)
# params.yaml keys added after runs were recorded without them, each with the value that does what
# the code did before the key existed (Adam before weight_decay): a run that lacks one reads as
# having this value, so it groups with the runs that set it so. A key added with a default that
# changes what runs do does not belong here.
ADDED_KEYS: dict[str, Any] = {"weight_decay": 0}
REPLICATES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Run:
    """One evaluated model: ``params`` flattened (``synth.train_faces``) with JSON-text values,
    ``protocol`` the recorded keys that define the evaluation (test-list hash, protocol names),
    the test images in order with their true angles, the (images, 3) absolute errors and the
    (images, 2) geodesic error and MAEV (None for a per-image CSV that can give neither)."""

    name: str
    rev: str
    params: dict[str, str]
    protocol: dict[str, str]
    stems: tuple[str, ...]
    true_deg: np.ndarray
    errors_deg: np.ndarray
    rotation_deg: np.ndarray | None = None

    @property
    def mae(self) -> dict[str, float]:
        """Test MAE per angle and their mean (degrees)."""
        per_angle = self.errors_deg.mean(axis=0)
        values = dict(zip(ANGLE_NAMES, per_angle.tolist(), strict=True))
        return {**values, "mean": float(per_angle.mean())}

    @property
    def seed(self) -> str:
        return self.params.get(SEED_KEY, "null")

    def fingerprint(self) -> tuple:
        """What makes two rows the same run: params (seed included) and identical errors."""
        return (tuple(sorted(self.params.items())), self.errors_deg.tobytes())


@dataclass
class Group:
    """Runs whose params differ only in the training seed."""

    params: dict[str, str]  # the shared params (without the seed)
    runs: list[Run] = field(default_factory=list)

    def mae_spread(self) -> dict[str, tuple[float, float | None]]:
        """Per metric: mean over runs and sample standard deviation (None for one run)."""
        table = np.array([[run.mae[name] for name in METRIC_NAMES] for run in self.runs])
        return _spread(METRIC_NAMES, table)

    def spread(self, metric: str = "mae") -> dict[str, tuple[float, float | None]]:
        """:meth:`mae_spread` for ``mae``; for a rotation error, ``{metric: (mean over runs of
        the runs' mean error, sample standard deviation)}``."""
        if metric == "mae":
            return self.mae_spread()
        table = self.errors(metric).mean(axis=1, keepdims=True)  # (runs, 1)
        return _spread((metric,), table)

    def errors(self, metric: str) -> np.ndarray:
        """(runs, images) absolute errors of one angle, or their mean over angles (``mean``), or
        the geodesic error or MAEV (``geodesic``, ``maev``) of each image."""
        if metric in ROTATION_ERROR_KEYS:
            missing = [run.name for run in self.runs if run.rotation_deg is None]
            if missing:
                raise HeadposeError(
                    f"--metric {metric}: the per-image CSV of {missing[0]} holds neither the "
                    "rotation errors nor the predicted angles to compute them from (re-run its "
                    "evaluate stage)"
                )
            stacked = np.stack([run.rotation_deg for run in self.runs])
            return stacked[:, :, ROTATION_ERROR_KEYS.index(metric)]
        stacked = np.stack([run.errors_deg for run in self.runs])
        if metric == "mean":
            return stacked.mean(axis=2)
        return stacked[:, :, ANGLE_NAMES.index(metric)]


def _spread(names: tuple[str, ...], table: np.ndarray) -> dict[str, tuple[float, float | None]]:
    """Per column of a (runs, metrics) table: mean and sample standard deviation (None for one
    run)."""
    means = table.mean(axis=0)
    stds = table.std(axis=0, ddof=1) if len(table) > 1 else [None] * len(names)
    return {
        name: (float(mean), None if std is None else float(std))
        for name, mean, std in zip(names, means, stds, strict=True)
    }


def check_metric(metric: str) -> str:
    """``metric`` if ``headpose compare`` can compare by it (:data:`COMPARED_METRICS`), else a
    HeadposeError naming the choices."""
    if metric not in COMPARED_METRICS:
        raise HeadposeError(f"--metric {metric}: expected one of {', '.join(COMPARED_METRICS)}")
    return metric


@dataclass(frozen=True)
class Interval:
    """A difference (other minus baseline, degrees) and its bootstrap interval."""

    difference: float
    low: float
    high: float

    @property
    def distinguishable(self) -> bool:
        return not self.low <= 0.0 <= self.high


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; values as JSON text (lists included)."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value, sort_keys=True)
    return flat


def recorded_params(params: dict[str, Any]) -> dict[str, str]:
    """A run's params.yaml mapping, flattened (:func:`flatten`), with each key it lacks from
    :data:`ADDED_KEYS` at the value that does what the run's code did."""
    return flatten(ADDED_KEYS | params)


def unique_runs(runs: list[Run]) -> list[Run]:
    """``runs`` without repeats of one run (same params, seed and errors), first kept."""
    seen: set[tuple] = set()
    kept = []
    for run in runs:
        if run.fingerprint() not in seen:
            seen.add(run.fingerprint())
            kept.append(run)
    return kept


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by their params without ``train_seed``, in order of first appearance."""
    groups: dict[tuple, Group] = {}
    for run in unique_runs(runs):
        shared = {key: value for key, value in run.params.items() if key != SEED_KEY}
        key = tuple(sorted(shared.items()))
        groups.setdefault(key, Group(shared)).runs.append(run)
    return list(groups.values())


def check_comparable(runs: list[Run]) -> None:
    """Raise a HeadposeError naming the first difference in how ``runs`` were evaluated: a
    recorded protocol key (test-list hash, crop protocol ...), the test images or their true
    angles. A key one run does not record is not compared (older runs); the images always are."""
    if not runs:
        raise HeadposeError("no evaluated runs to compare")
    first = runs[0]
    for run in runs[1:]:
        for key in sorted(set(first.protocol) & set(run.protocol)):
            if first.protocol[key] != run.protocol[key]:
                raise HeadposeError(
                    f"cannot compare {first.name} and {run.name}: they were evaluated with "
                    f"different {key} ({first.protocol[key]} vs {run.protocol[key]})"
                )
        if first.stems != run.stems:
            raise HeadposeError(
                f"cannot compare {first.name} and {run.name}: different test images "
                f"({len(first.stems)} vs {len(run.stems)}; first difference: "
                f"{_first_difference(first.stems, run.stems)})"
            )
        if not np.allclose(first.true_deg, run.true_deg, atol=1e-3):
            row = int(np.argwhere(~np.isclose(first.true_deg, run.true_deg, atol=1e-3))[0, 0])
            raise HeadposeError(
                f"cannot compare {first.name} and {run.name}: different true angles of test "
                f"image {first.stems[row]} (a different test set under the same names)"
            )


def _first_difference(a: tuple[str, ...], b: tuple[str, ...]) -> str:
    for index, (left, right) in enumerate(zip(a, b, strict=False)):
        if left != right:
            return f"image {index + 1} is {left} vs {right}"
    return f"one list ends after {min(len(a), len(b))} images"


def paired_bootstrap(
    baseline: np.ndarray,
    other: np.ndarray,
    replicates: int = REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Difference of mean error (``other`` - ``baseline``) and its percentile interval.

    ``baseline`` and ``other`` are (runs, images) errors on the same images in the same order.
    Each replicate draws the images with replacement (shared by both groups) and, separately,
    each group's runs with replacement; its difference is of the means over those draws.
    """
    if baseline.shape[1] != other.shape[1]:
        raise HeadposeError("paired bootstrap: the two groups hold different numbers of images")
    rng = np.random.default_rng(seed)
    images = baseline.shape[1]
    # Weights instead of index arrays: a replicate's mean over drawn images is (counts / n) @ e.
    image_weights = _draw_weights(rng, replicates, images)  # (R, images)
    base_weights = _draw_weights(rng, replicates, baseline.shape[0])  # (R, runs)
    other_weights = _draw_weights(rng, replicates, other.shape[0])
    base = np.einsum("rk,rk->r", base_weights, image_weights @ baseline.T)
    others = np.einsum("rk,rk->r", other_weights, image_weights @ other.T)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(others - base, [tail, 100 - tail])
    difference = float(other.mean() - baseline.mean())
    return Interval(difference, float(low), float(high))


def _draw_weights(rng: np.random.Generator, replicates: int, size: int) -> np.ndarray:
    """(replicates, size) shares: how often each item was drawn in ``size`` draws, over size."""
    draws = rng.integers(0, size, size=(replicates, size))
    counts = np.zeros((replicates, size))
    np.add.at(counts, (np.arange(replicates)[:, None], draws), 1.0)
    return counts / size


def group_label(group: Group, baseline: Group, groups: list[Group] | None = None) -> str:
    """A group named by the params in which it differs from the baseline (``head=rotation_6d``);
    the baseline by its values of the params in which any of ``groups`` differs from it
    (``baseline: head=bins``)."""
    if group is baseline:
        keys = sorted(
            {key for other in groups or [] for key in other.params} | set(baseline.params)
        )
        differing = [
            key for key in keys
            if any(other.params.get(key) != baseline.params.get(key) for other in groups or [])
        ]  # fmt: skip
        shown = [f"{key}={_plain(baseline.params[key])}" for key in differing
                 if key in baseline.params]  # fmt: skip
        return "baseline: " + ", ".join(shown) if shown else "baseline"
    changed = [
        f"{key}={_plain(value)}"
        for key, value in sorted(group.params.items())
        if baseline.params.get(key) != value
    ]
    missing = [key for key in sorted(baseline.params) if key not in group.params]
    return ", ".join(changed + [f"{key} unset" for key in missing]) or "same params"


def _plain(value: str) -> str:
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else value


def select_baseline(groups: list[Group], selector: str | None, workspace: str) -> Group:
    """The baseline group: the one holding the run named ``selector`` (an experiment name or a
    revision prefix), the one whose params hold ``selector``'s KEY=VALUE pairs (comma-separated),
    or with no selector the one holding the run named ``workspace``."""
    wanted = selector or workspace
    if selector and "=" in selector:
        pairs = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        matching = [g for g in groups if all(_matches(g.params, k, v) for k, v in pairs.items())]
        if len(matching) == 1:
            return matching[0]
        known = "; ".join(group_label(g, groups[0]) for g in groups)
        problem = "matches no group" if not matching else f"matches {len(matching)} groups"
        raise HeadposeError(f"--baseline {selector} {problem} (groups, against the first: {known})")
    for group in groups:
        for run in group.runs:
            if run.name == wanted or (len(wanted) >= 7 and run.rev.startswith(wanted)):
                return group
    names = ", ".join(run.name for group in groups for run in group.runs)
    if selector is None:
        raise HeadposeError(
            f"the {workspace} has no evaluation results to compare against; pass --baseline "
            f"NAME (an experiment: {names}) or --baseline KEY=VALUE (e.g. head=bins)"
        )
    raise HeadposeError(f"--baseline {selector}: no such run (runs: {names})")


def _matches(params: dict[str, str], key: str, value: str) -> bool:
    recorded = params.get(key)
    return recorded is not None and (recorded == value or _plain(recorded) == value)
