"""``headpose compare``: its arguments, and the calls into :mod:`headpose.compare`."""

from __future__ import annotations

import argparse
import json
import sys

from headpose.compare.report import compare, format_markdown, plot_report, report_json
from headpose.compare.stats import COMPARED_METRICS, REPLICATES, check_metric
from headpose.errors import HeadposeError


def add_compare_command(subparsers: argparse._SubParsersAction) -> None:
    """``headpose compare [--baseline NAME|KEY=VALUE] [--metric mae|geodesic|maev] [--keep-stale]
    [--json] [--plot FILE]``."""
    parser = subparsers.add_parser(
        "compare",
        help="test MAE of the repository's experiments grouped by training seed, with "
        "paired-bootstrap intervals against a baseline",
        description="Group the evaluated runs of the repository (the workspace, the commit and "
        "its experiments, as dvc exp show lists them) by their params without train_seed, and "
        "print per group the runs, mean and standard deviation of test MAE, and the difference "
        "of mean MAE against the baseline group with a 95 %% paired-bootstrap interval over "
        "test images and seeds. Refuses runs evaluated on different test lists or protocols.",
    )
    parser.add_argument(
        "--baseline",
        help="the baseline group: an experiment name or revision, or KEY=VALUE[,KEY=VALUE] of "
        "its params (default: the group of the workspace's results)",
    )
    parser.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    parser.add_argument(
        "--num", type=_positive, default=1, help="commits of HEAD whose experiments count"
    )
    parser.add_argument(
        "--replicates", type=_positive, default=REPLICATES, help="bootstrap replicates"
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="REV",
        help="leave out a run: an experiment name, 'workspace', or a revision (7+ hex digits); "
        "repeatable",
    )
    parser.add_argument(
        "--keep-stale",
        action="store_true",
        help="keep the runs of commits whose dvc.lock predates their code or params (left out "
        "by default, one line each)",
    )
    parser.add_argument(
        "--test-set",
        metavar="NAME",
        help="compare on the test_sets entry NAME (evaluate_set@NAME; default: test_data)",
    )
    parser.add_argument(
        "--metric",
        default="mae",
        help=f"what groups are compared by: {', '.join(COMPARED_METRICS)} (default: mae, the "
        "mean of the yaw, pitch and roll MAE; geodesic: the angle of R_true^T R_pred; maev: the "
        "mean angle between the matching columns of the two rotation matrices)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--plot", metavar="FILE", help="also draw the intervals into FILE")
    parser.set_defaults(run=run_compare_command)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def run_compare_command(args: argparse.Namespace) -> None:
    """``headpose compare``: load the runs, compare them, print (and plot) the report."""
    from headpose.compare.runs import WORKSPACE, load_runs

    metric = check_metric(args.metric)  # before the runs are read
    loaded = load_runs(args.repo, args.num, args.test_set)
    for reason in loaded.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    runs = exclude_runs(loaded.runs, args.exclude)  # first: a stale run may be named too
    runs = leave_out_stale(runs, loaded.stale, args.keep_stale)
    if not runs:
        raise HeadposeError(f"no evaluated runs in {args.repo} (run dvc repro or dvc exp run)")
    report = compare(runs, args.baseline, WORKSPACE, args.replicates, metric=metric)
    if args.plot:
        plot_report(report, args.plot)
    print(json.dumps(report_json(report), indent=2) if args.json else format_markdown(report))


def leave_out_stale(runs: list, stale: list, keep: bool) -> list:
    """``runs`` without the stale ones (``(run, difference)`` pairs), each said in one line;
    with ``keep`` all of them, each stale one said too."""
    present = {id(run) for run in runs}
    stale = [(run, difference) for run, difference in stale if id(run) in present]
    for run, difference in stale:
        label = run.name if run.name in (run.rev, run.rev[:7]) else f"{run.name} ({run.rev[:7]})"
        if keep:
            print(f"kept {label} (--keep-stale): {difference.describe()}", file=sys.stderr)
        else:
            print(
                f"left out {label}: {difference.describe()}; pass --keep-stale to keep it",
                file=sys.stderr,
            )
    if keep:
        return list(runs)
    left_out = [id(run) for run, _ in stale]
    return [run for run in runs if id(run) not in left_out]


def exclude_runs(runs: list, excluded: list[str]) -> list:
    """``runs`` without those named by ``excluded`` (a run's name, or a prefix of 7 or more
    characters of its revision); a name that matches no run is an error, not a silent no-op."""
    kept = list(runs)
    for name in excluded:
        matches = [
            run for run in kept if run.name == name or (len(name) >= 7 and run.rev.startswith(name))
        ]
        if not matches:
            raise HeadposeError(f"--exclude {name}: no evaluated run has that name or revision")
        for run in matches:
            print(f"excluded {run.name} ({run.rev[:7]}), as asked", file=sys.stderr)
        kept = [run for run in kept if run not in matches]
    return kept
