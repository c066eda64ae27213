"""``headpose compare``: the report of a repository's runs grouped by training seed.

:func:`compare` turns runs (:mod:`headpose.compare.runs`) into a :class:`Report`: one row per
seed group with its runs, mean and standard deviation of test MAE, and the difference of mean
MAE against the baseline group with its paired-bootstrap interval
(:mod:`headpose.compare.stats`); with ``metric="geodesic"`` or ``"maev"`` the same for the mean
geodesic error or MAEV of each run instead of its MAE. :func:`format_markdown` prints it as a
Markdown table, :func:`report_json` as JSON, :func:`plot_report` draws each group's difference
and interval (written atomically). The sub-command's options are parsed in
:mod:`headpose.cli.compare` and passed on as plain values.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

from headpose.compare.stats import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    METRIC_NAMES,
    REPLICATES,
    Group,
    Interval,
    Run,
    check_comparable,
    check_metric,
    group_label,
    group_runs,
    paired_bootstrap,
    select_baseline,
)
from headpose.io.files import atomic_path

# A verdict (better, worse, not distinguishable) needs a seed spread on both sides: with one
# run a group's interval counts only the test images, while the seed spread of a small model can
# exceed every difference between variants.
MIN_SEEDS_FOR_VERDICT = 2


@dataclass(frozen=True)
class Row:
    """One seed group of the report."""

    label: str
    group: Group
    spread: dict[str, tuple[float, float | None]]
    interval: Interval | None  # None for the baseline itself
    baseline_runs: int = 0

    @property
    def verdict(self) -> str | None:
        """better, worse or not distinguishable; None for the baseline and for a group whose
        side or the baseline's has fewer than :data:`MIN_SEEDS_FOR_VERDICT` runs."""
        if self.interval is None or min(len(self.group.runs), self.baseline_runs) < (
            MIN_SEEDS_FOR_VERDICT
        ):
            return None
        if not self.interval.distinguishable:
            return "not distinguishable"
        return "better" if self.interval.high < 0 else "worse"

    def verdict_text(self) -> str:
        """The verdict, or why there is none."""
        if self.interval is None:
            return ""
        return self.verdict or (
            f"no verdict: needs {MIN_SEEDS_FOR_VERDICT}+ training seeds on each side"
        )


def runs_text(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


# How each metric of ``--metric`` is named in the report.
METRIC_LABELS = {"mae": "mean MAE", "geodesic": "geodesic error", "maev": "MAEV"}


@dataclass(frozen=True)
class Report:
    rows: list[Row]
    images: int
    protocol: dict[str, str]
    replicates: int
    bootstrap_seed: int
    metric: str = "mae"

    @property
    def columns(self) -> tuple[str, ...]:
        """The spread's columns: yaw, pitch, roll and mean for ``mae``, else the metric."""
        return METRIC_NAMES if self.metric == "mae" else (self.metric,)


def compare(
    runs: list[Run],
    baseline: str | None = None,
    workspace: str = "workspace",
    replicates: int = REPLICATES,
    bootstrap_seed: int = BOOTSTRAP_SEED,
    metric: str = "mae",
) -> Report:
    """Group ``runs`` by params without the training seed, check they are comparable, and set
    each group against the baseline (see :func:`headpose.compare.stats.select_baseline`) by
    ``metric``: ``mae`` (the mean of the three angles' absolute errors), ``geodesic`` or
    ``maev`` (:data:`headpose.compare.stats.COMPARED_METRICS`)."""
    check_metric(metric)
    check_comparable(runs)
    groups = group_runs(runs)
    base = select_baseline(groups, baseline, workspace)
    ordered = [base] + [group for group in groups if group is not base]
    per_image = "mean" if metric == "mae" else metric  # the errors of one image
    rows = []
    for group in ordered:
        interval = None
        if group is not base:
            interval = paired_bootstrap(
                base.errors(per_image), group.errors(per_image), replicates, bootstrap_seed
            )
        label = group_label(group, base, groups)
        rows.append(Row(label, group, group.spread(metric), interval, len(base.runs)))
    first = runs[0]
    return Report(rows, len(first.stems), dict(first.protocol), replicates, bootstrap_seed, metric)


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def format_markdown(report: Report) -> str:
    """The report as a Markdown table with a line saying how to read it."""
    percent = round(CONFIDENCE * 100)
    label = METRIC_LABELS[report.metric]
    headers = ["yaw", "pitch", "roll", "mean MAE"] if report.metric == "mae" else [label]
    lines = [
        f"| group | runs | {' | '.join(headers)} | difference [{percent} % CI] | |",
        "|---" * (len(headers) + 4) + "|",
    ]
    for row in report.rows:
        cells = [_cell(*row.spread[name]) for name in report.columns]
        if row.interval is None:
            difference, verdict = "", ""
        else:
            i = row.interval
            difference = f"{i.difference:+.2f} [{i.low:+.2f}, {i.high:+.2f}]"
            verdict = row.verdict_text()
        lines.append(
            f"| {row.label} | {len(row.group.runs)} | " + " | ".join(cells)
            + f" | {difference} | {verdict} |"
        )  # fmt: skip
    lines.append("")
    measured = "Test MAE" if report.metric == "mae" else f"Mean test {label}"
    lines.append(
        f"{measured} in degrees on {report.images} test images: mean ± standard deviation over "
        f"the runs (training seeds) of each group. Difference: {label} minus the baseline's, "
        f"{percent} % interval of a paired bootstrap over test images and seeds "
        f'({report.replicates} replicates, seed {report.bootstrap_seed}); "not '
        'distinguishable" when it covers 0.'
    )
    listed = next(
        (value for key, value in report.protocol.items() if key.endswith(":test_list.sha256")),
        None,
    )
    if listed:
        lines[-1] += f" Test list SHA-256 {json.loads(listed)[:12]}."
    if any(len(row.group.runs) == 1 for row in report.rows):
        lines.append(
            "A group of one run has no seed spread: its interval counts only the test images, "
            f"and it gets no verdict until both sides have {MIN_SEEDS_FOR_VERDICT} or more "
            "training seeds."
        )
    return "\n".join(lines)


def report_json(report: Report) -> dict:
    """The report as plain data (``--json``)."""
    rows = []
    for row in report.rows:
        entry = {
            "group": row.label,
            "params": row.group.params,
            "runs": [
                {"name": run.name, "rev": run.rev, "seed": run.seed} for run in row.group.runs
            ],
        }
        spread = {name: {"mean": mean, "std": std} for name, (mean, std) in row.spread.items()}
        # mae: per angle and their mean; a rotation error: its one mean and std
        entry[report.metric] = spread if report.metric == "mae" else spread[report.metric]
        if row.interval is not None:
            entry[f"difference_mean_{report.metric}"] = {
                "value": row.interval.difference,
                "ci_low": row.interval.low,
                "ci_high": row.interval.high,
                "confidence": CONFIDENCE,
                "distinguishable": row.interval.distinguishable,
                "verdict": row.verdict,
                "min_seeds_for_verdict": MIN_SEEDS_FOR_VERDICT,
            }
        rows.append(entry)
    return {
        "metric": report.metric,
        "test_images": report.images,
        "protocol": {key: json.loads(value) for key, value in report.protocol.items()},
        "bootstrap": {"replicates": report.replicates, "seed": report.bootstrap_seed},
        "groups": rows,
    }


def plot_report(report: Report, path: str | Path) -> None:
    """Each group's difference of mean MAE against the baseline with its interval (a PNG or any
    format matplotlib knows from the suffix), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report.rows if row.interval is not None]
    figure, axes = plt.subplots(figsize=(8, 1.6 + 0.5 * max(len(rows), 1)), layout="constrained")
    for position, row in enumerate(rows):
        i = row.interval
        color = "tab:blue" if row.verdict in ("better", "worse") else "tab:gray"
        axes.errorbar(
            i.difference, position, xerr=[[i.difference - i.low], [i.high - i.difference]],
            fmt="o", color=color, capsize=4,
        )  # fmt: skip
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels(
        [
            f"{row.label} ({runs_text(len(row.group.runs))}"
            + (")" if row.verdict else ", no verdict)")
            for row in rows
        ]
    )
    axes.set_ylim(-0.7, len(rows) - 0.3)
    baseline = report.rows[0]
    title = f"against {baseline.label} ({runs_text(len(baseline.group.runs))})"
    axes.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    axes.set_xlabel(
        f"{METRIC_LABELS[report.metric]} difference, degrees\n"
        f"({round(CONFIDENCE * 100)} % paired bootstrap interval; "
        f"grey: not distinguishable or fewer than {MIN_SEEDS_FOR_VERDICT} seeds)"
    )
    try:
        with atomic_path(path) as temp:
            figure.savefig(temp, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(figure)
