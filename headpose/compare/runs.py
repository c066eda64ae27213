"""Reading a repository's evaluated runs for ``headpose compare`` through DVC's Python API.

:func:`load_runs` lists what ``dvc exp show`` lists (``Repo.experiments.show``: the workspace,
the baseline commits and their experiments, queued runs finished, ``dvc exp pull``-ed ones
included) and, for each with evaluation metrics, reads the per-image CSV of the evaluate stage at
that revision (``dvc.api.read``; the workspace's own file for the workspace). Failed, queued or
running experiments and revisions without the CSV are skipped and counted. A commit (or
experiment) whose ``dvc.lock`` records other hashes or params than the files it holds, for the
stages behind the compared metrics, is returned apart with the first difference
(:func:`headpose.compare.lock.stale_dependency`; the workspace by ``dvc status``,
:func:`~headpose.compare.lock.stale_workspace`): its metrics belong to older code. What defines the
evaluation (:data:`PROTOCOL_METRICS`, :data:`PROTOCOL_PARAMS`) is taken from the metrics and
params each run recorded, for :func:`headpose.compare.stats.check_comparable`.

``Repo.experiments.show`` is not DVC's public API; the public ``dvc.api.exp_show`` is the same
call passed through ``dvc exp show``'s table, which loses what compare needs: which file a metric
or param comes from (columns of all files are merged, prefixed only on a name clash), the values
(each goes through the table's text: seed 0 reads ``0.0``, ``false`` the text ``'False'``, a
digest ``"1e5"`` the float 100000.0) and the full commit of a run (7 characters; a baseline by
its branch name). ``dvc.api.metrics_show`` / ``params_show`` per revision would give exact
values but not the list of runs (docs/design.md, "What is hand-written, and why").
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headpose.compare.lock import GitTree, StaleDependency, stale_dependency, stale_workspace
from headpose.compare.stats import Run, flatten, recorded_params
from headpose.errors import HeadposeError, clip
from headpose.evaluation.metrics import ROTATION_ERROR_COLUMNS, rotation_errors_deg
from headpose.geometry import ANGLE_NAMES

PARAMS_FILE = "params.yaml"
EVALUATION_METRICS = "metrics/evaluation.json"
PER_IMAGE_CSV = "data/evaluation/per_image.csv"
WORKSPACE = "workspace"


def evaluation_files(test_set: str | None = None) -> tuple[str, str]:
    """(metrics file, per-image CSV) of the evaluate stage (``test_set`` None: ``test_data``)
    or of ``evaluate_set@<test_set>`` (one of the ``test_sets``)."""
    if test_set is None:
        return EVALUATION_METRICS, PER_IMAGE_CSV
    return f"metrics/test_sets/{test_set}.json", f"data/evaluation/{test_set}.csv"


# Keys of the evaluation metrics / params that must agree between compared runs.
PROTOCOL_METRICS = ("test_list.sha256", "count", "real_aflw2000", "crop_protocol")
PROTOCOL_PARAMS = ("crop_protocol",)


@dataclass(frozen=True)
class Loaded:
    """The runs found, the revisions skipped with why, and the runs whose ``dvc.lock``
    predates their commit's files (also in ``runs``), with the first difference."""

    runs: list[Run]
    skipped: list[str]
    stale: list[tuple[Run, StaleDependency]]


def load_runs(repo_root: str | Path, num: int = 1, test_set: str | None = None) -> Loaded:
    """Every evaluated run of the repository at ``repo_root``: the workspace, the last ``num``
    commits of HEAD and the experiments based on them, scored on ``test_data`` or on the
    ``test_sets`` entry ``test_set`` (one set at a time: runs never mix sets)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(repo_root)) as repo:
            states = repo.experiments.show(num=num)
    except DvcException as error:
        raise HeadposeError(f"cannot list the experiments of {repo_root}: {error}") from None
    revisions = _revisions(states)
    if test_set is not None:
        check_test_set_known(test_set, [data for _, _, data in revisions])
    runs: list[Run] = []
    skipped: list[str] = []
    stale: list[tuple[Run, StaleDependency]] = []
    tree = None
    files = evaluation_files(test_set)
    for name, rev, data in revisions:
        if data is None:
            skipped.append(f"{name}: no results (failed, queued or running)")
            continue
        run = _run(repo_root, name, rev, data, skipped, files)
        if run is None:
            continue
        runs.append(run)
        if rev == WORKSPACE:
            difference = stale_workspace(repo_root, files[0])
        else:
            tree = tree or GitTree(repo_root)
            difference = stale_dependency(tree, rev, files[0])
        if difference is not None:
            stale.append((run, difference))
    return Loaded(runs, skipped, stale)


def check_test_set_known(test_set: str, revisions_data: list) -> None:
    """Refuse (one line naming it and the known ones) a ``--test-set`` that no listed run's
    params.yaml has among its ``test_sets``."""
    known: set[str] = set()
    for data in revisions_data:
        params = (getattr(data, "params", None) or {}).get(PARAMS_FILE, {}).get("data") or {}
        test_sets = params.get("test_sets")
        if isinstance(test_sets, dict):
            known |= {name for name in test_sets if isinstance(name, str)}
    if test_set not in known:
        listed = ", ".join(sorted(known)) if known else "none (no run's params.yaml has test_sets)"
        raise HeadposeError(
            f"--test-set {clip(test_set)}: no run has that test set; known test sets: {listed}"
        )


def _revisions(states: list) -> list[tuple[str, str, object]]:
    """(name, rev, data) of the workspace, each baseline commit and each of its experiments."""
    found = []
    for state in states:
        if state.rev == WORKSPACE:
            found.append((WORKSPACE, WORKSPACE, state.data))
            continue
        found.append((state.name or state.rev[:7], state.rev, state.data))
        for exp_range in state.experiments or []:
            # a queued or running experiment shows its baseline's results: not a run yet
            executor = exp_range.executor
            unfinished = executor is not None and executor.state in ("queued", "running")
            for exp in exp_range.revs:
                data = None if exp.error or unfinished else exp.data
                found.append((exp.name or exp_range.name or exp.rev[:7], exp.rev, data))
    return found


def _run(
    repo_root: str | Path,
    name: str,
    rev: str,
    data: object,
    skipped: list[str],
    files: tuple[str, str],
) -> Run | None:
    metrics_file, per_image_csv = files
    metrics = (data.metrics or {}).get(metrics_file, {}).get("data")
    if not metrics:
        skipped.append(f"{name}: no {metrics_file}")
        return None
    params = recorded_params((data.params or {}).get(PARAMS_FILE, {}).get("data") or {})
    flat_metrics = flatten(metrics)
    protocol = {f"{metrics_file}:{key}": flat_metrics[key] for key in PROTOCOL_METRICS
                if key in flat_metrics}  # fmt: skip
    protocol |= {f"{PARAMS_FILE}:{key}": params[key] for key in PROTOCOL_PARAMS if key in params}
    text = _read_per_image(repo_root, None if rev == WORKSPACE else rev, per_image_csv)
    if text is None:
        skipped.append(f"{name}: no {per_image_csv} in the DVC cache (dvc pull / dvc exp pull)")
        return None
    stems, true_deg, errors_deg, rotation_deg = parse_per_image(text, f"{per_image_csv} of {name}")
    return Run(name, rev, params, protocol, stems, true_deg, errors_deg, rotation_deg)


def _read_per_image(repo_root: str | Path, rev: str | None, path: str) -> str | None:
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return dvc.api.read(path, repo=str(repo_root), rev=rev, encoding="utf-8")
    except (DvcException, FileNotFoundError):
        return None


def parse_per_image(
    text: str, source: str
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray | None]:
    """Stems, (N, 3) true angles, (N, 3) absolute errors and (N, 2) geodesic error and MAEV of a
    per-image CSV's text. The rotation errors are its ``geodesic_error_deg`` and ``maev_deg``
    columns; a CSV written before they existed gives them from its predicted angles
    (:func:`headpose.evaluation.metrics.rotation_errors_deg`), or None without those."""
    true_columns = [f"true_{angle}_deg" for angle in ANGLE_NAMES]
    error_columns = [f"abs_error_{angle}_deg" for angle in ANGLE_NAMES]
    predicted_columns = [f"predicted_{angle}_deg" for angle in ANGLE_NAMES]
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise HeadposeError(f"{source} holds no rows")
    missing = [c for c in ("stem", *true_columns, *error_columns) if c not in rows[0]]
    if missing:
        raise HeadposeError(f"{source} lacks the column(s) {', '.join(missing)}")

    def numbers(columns: list[str] | tuple[str, ...]) -> np.ndarray:
        try:
            return np.array([[float(row[c]) for c in columns] for row in rows])
        except (TypeError, ValueError):
            raise HeadposeError(f"{source} holds a value that is not a number") from None

    true_deg, errors_deg = numbers(true_columns), numbers(error_columns)
    rotation_deg = None
    if all(column in rows[0] for column in ROTATION_ERROR_COLUMNS):
        rotation_deg = numbers(ROTATION_ERROR_COLUMNS)
    elif all(column in rows[0] for column in predicted_columns):
        rotation_deg = rotation_errors_deg(numbers(predicted_columns), true_deg)
    for values in (errors_deg, rotation_deg):
        if values is not None and not np.isfinite(values).all():
            raise HeadposeError(f"{source} holds a non-finite error")
    return tuple(row["stem"] for row in rows), true_deg, errors_deg, rotation_deg
