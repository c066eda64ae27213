"""``headpose compare``: the paired bootstrap against hand-computed cases, seed grouping, the
baseline choice, the refusals, and the command on a scratch DVC repository with experiments."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from headpose.cli import main
from headpose.compare.lock import GitTree, stale_dependency
from headpose.compare.report import compare, format_markdown, plot_report, report_json
from headpose.compare.runs import parse_per_image
from headpose.compare.stats import (
    Run,
    check_comparable,
    group_runs,
    paired_bootstrap,
    recorded_params,
)
from headpose.errors import HeadposeError

STEMS = ("a", "b", "c")
DEFAULTS = {"arch": "resnet18", "head": "bins", "bin_width": 3}


def _run(name: str, errors: list[float], seed: int = 0, **params) -> Run:
    """A run whose three test images have the given errors (the same for yaw, pitch, roll)."""
    flat = {key: json.dumps(value) for key, value in DEFAULTS.items()}
    flat["train_seed"] = json.dumps(seed)
    flat |= {key: json.dumps(value) for key, value in params.items()}
    column = np.array(errors, dtype=float)[:, None]
    true = np.tile([[10.0, -5.0, 2.0]], (len(errors), 1))
    stems = STEMS[: len(errors)]
    return Run(name, name, flat, {}, stems, true, np.repeat(column, 3, axis=1))


def test_interval_of_a_pair_of_images_matches_the_hand_computed_one():
    """One run each; per-image differences 1 and 2. Two draws of two images give 1 (both the
    first), 2 (both the second) or 1.5, each extreme with probability 1/4: the 2.5th and 97.5th
    percentiles are 1 and 2, the difference of means 1.5."""
    interval = paired_bootstrap(np.array([[1.0, 3.0]]), np.array([[2.0, 5.0]]))
    assert (interval.difference, interval.low, interval.high) == (1.5, 1.0, 2.0)
    assert interval.distinguishable


def test_interval_over_seeds_matches_the_hand_computed_one():
    """The baseline's two seeds give 1 and 3 on every image, the other's one seed 2: seed draws
    of the baseline give means 1, 3 or 2 (probability 1/4, 1/4, 1/2), so differences 1, -1, 0;
    the interval [-1, 1] covers 0."""
    interval = paired_bootstrap(np.array([[1.0, 1.0], [3.0, 3.0]]), np.array([[2.0, 2.0]]))
    assert (interval.difference, interval.low, interval.high) == (0.0, -1.0, 1.0)
    assert not interval.distinguishable


def test_pairing_removes_the_spread_between_images():
    """Images of very different difficulty, the other group better by exactly 0.5 on each: the
    paired interval is that 0.5 (unpaired resampling would spread it over several degrees)."""
    base = np.array([[1.0, 9.0, 20.0, 4.0]])
    interval = paired_bootstrap(base, base - 0.5)
    assert interval.low == pytest.approx(-0.5) and interval.high == pytest.approx(-0.5)


def test_bootstrap_is_deterministic_and_follows_its_seed():
    rng = np.random.default_rng(1)
    base, other = rng.random((3, 50)), rng.random((3, 50))
    assert paired_bootstrap(base, other) == paired_bootstrap(base, other)
    assert paired_bootstrap(base, other, seed=1) != paired_bootstrap(base, other)


def test_runs_group_by_params_without_the_training_seed():
    runs = [
        _run("s0", [1, 2, 3], seed=0),
        _run("r0", [1, 1, 1], seed=0, head="rotation_6d"),
        _run("s1", [2, 2, 3], seed=1),
        _run("workspace", [2, 2, 3], seed=1),  # the same run as s1: counted once
        _run("s1-gpu", [2, 2, 4], seed=1),  # same seed, other result (a GPU rerun): counted
        _run("r1", [1, 2, 1], seed=1, head="rotation_6d"),
        _run("bw1", [1, 2, 1], seed=1, bin_width=1),
    ]
    groups = group_runs(runs)
    assert [[run.name for run in group.runs] for group in groups] == [
        ["s0", "s1", "s1-gpu"],
        ["r0", "r1"],
        ["bw1"],
    ]
    mean, std = groups[0].mae_spread()["mean"]
    assert mean == pytest.approx(np.mean([2, 7 / 3, 8 / 3]))
    assert std == pytest.approx(np.std([2, 7 / 3, 8 / 3], ddof=1))
    assert groups[2].mae_spread()["yaw"] == (pytest.approx(4 / 3), None)


def test_a_run_from_before_a_key_groups_with_the_value_that_does_what_it_did():
    """weight_decay came after the runs of Adam: a run without it is a weight_decay 0 run, and
    one with another value stays apart."""
    assert recorded_params({"lr": 0.002}) == {"weight_decay": "0", "lr": "0.002"}
    assert recorded_params({"weight_decay": 0.5})["weight_decay"] == "0.5"
    runs = []
    for name, seed, extra in (("old", 0, {}), ("new", 1, {"weight_decay": 0}),
                              ("adamw", 0, {"weight_decay": 0.05})):  # fmt: skip
        run = _run(name, [1, 2, 3], seed=seed)
        params = {key: json.loads(value) for key, value in run.params.items()} | extra
        runs.append(dataclasses.replace(run, params=recorded_params(params)))
    assert [[run.name for run in group.runs] for group in group_runs(runs)] == [
        ["old", "new"],
        ["adamw"],
    ]


def test_a_group_of_one_run_gets_no_verdict(tmp_path):
    """One run against three: the interval over test images alone can exclude 0 while the seed
    spread is wider than the difference; the table, the JSON and the plot say "no verdict"."""
    runs = [
        _run("b0", [1, 2, 3], seed=0),
        _run("b1", [1.2, 2.1, 3.1], seed=1),
        _run("b2", [1.1, 2.2, 3.0], seed=2),
        _run("r0", [3, 4, 5], seed=0, head="rotation_6d"),
    ]
    report = compare(runs, baseline="head=bins")
    single = report.rows[1]
    assert single.interval.distinguishable and single.verdict is None
    line = next(row for row in format_markdown(report).splitlines() if row.startswith("| head="))
    assert line.endswith("| no verdict: needs 2+ training seeds on each side |")
    assert "worse" not in line
    difference = report_json(report)["groups"][1]["difference_mean_mae"]
    assert difference["verdict"] is None and difference["min_seeds_for_verdict"] == 2
    plot_report(report, tmp_path / "one.png")
    assert (tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"


def test_report_labels_groups_and_marks_what_the_interval_supports():
    runs = [
        _run("b0", [1, 2, 3], seed=0),
        _run("b1", [1.2, 2.1, 3.1], seed=1),
        _run("r0", [1.1, 2, 3.1], seed=0, head="rotation_6d"),
        _run("r1", [1.1, 2.1, 3.0], seed=1, head="rotation_6d"),
        _run("w0", [3, 4, 5], seed=0, bin_width=1),
        _run("w1", [3.1, 4, 5], seed=1, bin_width=1),
    ]
    report = compare(runs, baseline="head=bins,bin_width=3")
    assert report.rows[0].label == "baseline: bin_width=3, head=bins"
    text = format_markdown(report)
    rotation = next(line for line in text.splitlines() if line.startswith("| head=rotation_6d"))
    assert "| 2 |" in rotation and rotation.endswith("| not distinguishable |")
    width = next(line for line in text.splitlines() if line.startswith("| bin_width=1"))
    assert width.endswith("| worse |") and "head=bins" not in width
    data = report_json(report)
    assert [g["group"] for g in data["groups"]] == [
        "baseline: bin_width=3, head=bins",
        "head=rotation_6d",
        "bin_width=1",
    ]
    assert data["groups"][2]["difference_mean_mae"]["distinguishable"] is True
    assert compare(runs, baseline="r1").rows[0].label.startswith("baseline: ")
    assert compare(runs, baseline="r1").rows[0].group.runs[0].name == "r0"


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        (None, "the workspace has no evaluation results"),
        ("nope", "--baseline nope: no such run"),
        ("head=lstm", "--baseline head=lstm matches no group"),
        ("arch=resnet18", "matches 2 groups"),
    ],
)
def test_a_baseline_that_names_no_single_group_is_refused(baseline, message):
    runs = [_run("b0", [1, 2, 3]), _run("r0", [1, 1, 1], head="rotation_6d")]
    with pytest.raises(HeadposeError, match=message):
        compare(runs, baseline=baseline)


def _with(run: Run, **changes) -> Run:
    fields = {**run.__dict__, **changes}
    return Run(**fields)


def test_runs_of_other_test_lists_or_protocols_are_refused_naming_the_difference():
    base = _with(_run("b0", [1, 2, 3]), protocol={"metrics/evaluation.json:test_list.sha256": "1"})
    check_comparable([base, _with(base, name="same")])
    cases = [
        (
            _with(base, name="other", protocol={"metrics/evaluation.json:test_list.sha256": "2"}),
            "b0 and other: they were evaluated with different "
            "metrics/evaluation.json:test_list.sha256 \\(1 vs 2\\)",
        ),
        (
            _with(base, name="crop", protocol={**base.protocol, "params.yaml:crop_protocol": "x"}),
            None,  # a key one run does not record is not compared
        ),
        (_with(base, name="fewer", stems=("a", "b")), "different test images \\(3 vs 2"),
        (_with(base, name="renamed", stems=("a", "x", "c")), "image 2 is b vs x"),
        (
            _with(base, name="moved", true_deg=base.true_deg + np.array([0, 0, 1.0])),
            "different true angles of test image a",
        ),
    ]
    for other, message in cases:
        if message is None:
            check_comparable([base, other])
        else:
            with pytest.raises(HeadposeError, match=message):
                check_comparable([base, other])
    tight = _with(base, protocol={"params.yaml:crop_protocol": '"tight"'})
    loose = _with(base, name="loose", protocol={"params.yaml:crop_protocol": '"loose"'})
    with pytest.raises(HeadposeError, match='crop_protocol \\("tight" vs "loose"\\)'):
        compare([tight, loose], baseline="b0")


def test_per_image_csv_is_parsed_and_bad_ones_named():
    header = "stem,true_yaw_deg,true_pitch_deg,true_roll_deg,abs_error_yaw_deg,"
    header += "abs_error_pitch_deg,abs_error_roll_deg\n"
    stems, true, errors, rotation = parse_per_image(header + "x,1,2,3,0.5,0.25,1\n", "f.csv")
    assert stems == ("x",) and true.tolist() == [[1, 2, 3]] and errors.tolist() == [[0.5, 0.25, 1]]
    assert rotation is None  # neither the rotation columns nor the predicted angles
    with pytest.raises(
        HeadposeError, match="f.csv lacks the column\\(s\\) true_pitch_deg, true_roll_deg, abs_"
    ):
        parse_per_image("stem,true_yaw_deg\nx,1\n", "f.csv")
    with pytest.raises(HeadposeError, match="f.csv holds a value that is not a number"):
        parse_per_image(header + "x,1,2,3,oops,0.25,1\n", "f.csv")


# --- The command on a real (scratch) DVC repository ----------------------------------------------

STAGE_SCRIPT = """
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
os.makedirs("data/evaluation", exist_ok=True)
os.makedirs("metrics", exist_ok=True)
offset = {"bins": 2.0, "rotation_6d": 1.0}[p["head"]]
rows = ["stem,true_yaw_deg,true_pitch_deg,true_roll_deg,abs_error_yaw_deg,abs_error_pitch_deg,"
        "abs_error_roll_deg"]
for i in range(20):
    e = offset + 0.1 * ((i * 7 + p["train_seed"] * 3) % 5)
    rows.append(f"img{i},{i},0,0,{e},{e},{e}")
open("data/evaluation/per_image.csv", "w").write("\\n".join(rows) + "\\n")
json.dump({"count": 20, "test_list": {"sha256": "abc"}}, open("metrics/evaluation.json", "w"))
"""

DVC_YAML = """stages:
  evaluate:
    cmd: python evaluate.py
    deps: [evaluate.py]
    params: [train_seed, head]
    outs: [data/evaluation/per_image.csv]
    metrics: [{metrics/evaluation.json: {cache: false}}]
"""


def _dvc(repo: Path, *arguments: str) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    subprocess.run(
        [sys.executable, "-m", "dvc", *arguments], cwd=repo, env=env, check=True,
        capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> Path:
    """A git+DVC repository whose workspace holds head=bins seed 0, with experiments of seeds
    1 and 2 and of head=rotation_6d seeds 0 to 2."""
    repo = tmp_path_factory.mktemp("repo")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    (repo / "params.yaml").write_text("train_seed: 0\nhead: bins\n")
    (repo / "evaluate.py").write_text(STAGE_SCRIPT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _dvc(repo, "repro", "-q")
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    for head, seed in [("bins", 1), ("bins", 2), ("rotation_6d", 0), ("rotation_6d", 1)]:
        _dvc(repo, "exp", "run", "-q", "-S", f"head={head}", "-S", f"train_seed={seed}")
    _dvc(repo, "exp", "run", "-q", "-S", "head=rotation_6d", "-S", "train_seed=2")
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=repo, check=True)
    _dvc(repo, "checkout", "-q")
    return repo


@pytest.mark.slow
def test_compare_reads_the_experiments_and_prints_intervals(experiments, tmp_path, capsys):
    figure = tmp_path / "out" / "intervals.png"
    main(["compare", "--repo", str(experiments), "--plot", str(figure)])
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[2].startswith("| baseline: head=bins | 3 | ")
    assert lines[3].startswith("| head=rotation_6d | 3 | ")
    assert "| -1.00 [" in lines[3] and lines[3].endswith("| better |")
    assert "on 20 test images" in text and "Test list SHA-256 abc." in text
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in figure.parent.iterdir()] == ["intervals.png"]  # no temporary left
    main(["compare", "--repo", str(experiments), "--json", "--baseline", "head=rotation_6d"])
    data = json.loads(capsys.readouterr().out)
    assert data["groups"][1]["group"] == "head=bins"
    assert data["groups"][1]["difference_mean_mae"]["value"] == pytest.approx(1.0)
    assert sorted(run["seed"] for run in data["groups"][1]["runs"]) == ["0", "1", "2"]


@pytest.mark.slow
def test_compare_by_a_rotation_error_needs_csvs_that_give_it(experiments, capsys):
    """The scratch stage's CSVs hold neither the rotation columns nor predicted angles."""
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--repo", str(experiments), "--metric", "geodesic"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and len(error.strip().splitlines()) == 1
    assert "error: --metric geodesic: the per-image CSV of " in error


@pytest.mark.slow
def test_excluded_runs_are_left_out_and_unknown_names_refused(experiments, capsys):
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=experiments, capture_output=True, text=True, check=True
    ).stdout.strip()
    # the workspace holds the commit's run: leave out both
    arguments = ["--json", "--baseline", "head=bins", "--exclude", "workspace"]
    main(["compare", "--repo", str(experiments), *arguments, "--exclude", head[:7]])
    captured = capsys.readouterr()
    groups = json.loads(captured.out)["groups"]
    assert [len(group["runs"]) for group in groups] == [2, 3]  # bins: seeds 1 and 2 only
    assert "excluded workspace" in captured.err and f"({head[:7]}), as asked" in captured.err
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--repo", str(experiments), "--exclude", "no-such-run"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "--exclude no-such-run: no evaluated run" in error


def test_compare_says_what_is_wrong_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--repo", str(tmp_path)])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.startswith("error: cannot list the experiments of")
    assert len(error.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["compare", "--replicates", "0"])
    assert "0 is not positive" in capsys.readouterr().err


def test_queued_and_running_experiments_are_not_runs():
    """DVC lists a queued or running experiment with its baseline's results: compare must not
    count those as a run of the experiment's params."""
    from dvc.repo.experiments.serialize import ExpExecutor, ExpRange, ExpState

    from headpose.compare.runs import _revisions

    baseline_data = object()

    def experiment(name: str, state: str) -> ExpRange:
        return ExpRange([ExpState(f"{name}-rev", data=object())], ExpExecutor(state), name)

    states = [
        ExpState("workspace", data=baseline_data),
        ExpState(
            "abc1234",
            data=baseline_data,
            experiments=[experiment(name, name) for name in ("success", "running", "queued")],
        ),
    ]
    found = {name: data for name, _, data in _revisions(states)}
    assert found["workspace"] is baseline_data and found["success"] is not None
    assert found["running"] is None and found["queued"] is None


# --- Runs whose dvc.lock predates their commit's files ------------------------------------------


def _git(repo: Path, *arguments: str) -> str:
    command = ["git", "-c", "user.email=t@t", "-c", "user.name=t", *arguments]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout


def _dvc_file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dvc_folder_md5(folder: Path) -> str:
    """A folder's hash as DVC's own code makes it (dvc_data's Tree), the oracle for ours."""
    from dvc_data.hashfile.tree import Tree

    entries = [
        {"md5": _dvc_file_md5(path), "relpath": path.relative_to(folder).as_posix()}
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]
    tree = Tree.from_list(entries)
    tree.digest()
    return tree.hash_info.value


def _write_lock(repo: Path) -> None:
    """A dvc.lock of train (code.py, the folder lib/, params epochs) -> model.pt, evaluate
    (model.pt, evaluate.py) -> metrics/evaluation.json, and export (export.py), made from the
    files in the working tree as dvc repro would record them."""

    def dep(path: str) -> dict:
        target = repo / path
        md5 = _dvc_folder_md5(target) if target.is_dir() else _dvc_file_md5(target)
        return {"path": path, "hash": "md5", "md5": md5}

    epochs = yaml.safe_load((repo / "params.yaml").read_text())["epochs"]
    model = {"path": "model.pt", "hash": "md5", "md5": "0" * 32}  # a DVC output: not in git
    stages = {
        "train": {
            "cmd": "python code.py",
            "deps": [dep("code.py"), dep("lib")],
            "params": {"params.yaml": {"epochs": epochs}},
            "outs": [model],
        },
        "evaluate": {
            "cmd": "python evaluate.py",
            "deps": [model, dep("evaluate.py")],
            "outs": [{"path": "metrics/evaluation.json", "hash": "md5", "md5": "1" * 32}],
        },
        "export": {"cmd": "python export.py", "deps": [model, dep("export.py")], "outs": []},
    }
    (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


@pytest.fixture
def locked_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    (repo / "lib" / "sub").mkdir(parents=True)
    for name, text in [
        ("code.py", "print(1)\n"), ("lib/a.py", "A = 1\n"), ("lib/sub/b.py", "B = 2\n"),
        ("evaluate.py", "e = 1\n"), ("export.py", "x = 1\n"), ("params.yaml", "epochs: 3\n"),
    ]:  # fmt: skip
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _write_lock(repo)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "fresh")
    return repo


def _commit(repo: Path, path: str, text: str) -> str:
    (repo / path).write_text(text)
    _git(repo, "commit", "-qam", f"edit {path}")
    return _git(repo, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize(
    ("path", "text", "stale_path"),
    [
        ("lib/sub/b.py", "B = 3\n", "lib"),  # a file in a folder dependency, upstream
        ("code.py", "print(2)\n", "code.py"),
        ("evaluate.py", "e = 2\n", "evaluate.py"),  # the stage that writes the metrics
        ("params.yaml", "epochs: 4\n", "params.yaml:epochs"),
    ],
)
def test_a_commit_whose_lock_predates_its_files_is_stale(locked_repo, path, text, stale_path):
    tree = GitTree(locked_repo)
    assert stale_dependency(tree, "HEAD", "metrics/evaluation.json") is None
    recorded = yaml.safe_load((locked_repo / "dvc.lock").read_text())
    rev = _commit(locked_repo, path, text)

    difference = stale_dependency(tree, rev, "metrics/evaluation.json")

    assert difference is not None and difference.path == stale_path
    if stale_path == "params.yaml:epochs":
        assert (difference.recorded, difference.held) == ("3", "4")
    else:
        target = locked_repo / stale_path
        held = _dvc_folder_md5(target) if target.is_dir() else _dvc_file_md5(target)
        entries = [d for s in recorded["stages"].values() for d in s.get("deps", [])]
        assert difference.recorded == next(d["md5"] for d in entries if d["path"] == stale_path)
        assert difference.held == held
    assert difference.describe() == (
        f"dvc.lock records {difference.recorded} for {stale_path}, the commit holds "
        f"{difference.held}"
    )
    _write_lock(locked_repo)  # dvc repro, committed: fresh again
    rev = _commit(locked_repo, "dvc.lock", (locked_repo / "dvc.lock").read_text())
    assert stale_dependency(tree, rev, "metrics/evaluation.json") is None


def test_what_the_compared_metrics_do_not_depend_on_is_not_checked(locked_repo):
    tree = GitTree(locked_repo)
    rev = _commit(locked_repo, "export.py", "x = 2\n")  # export is not behind the metrics
    assert stale_dependency(tree, rev, "metrics/evaluation.json") is None
    lock = yaml.safe_load((locked_repo / "dvc.lock").read_text())
    for dep in lock["stages"]["train"]["deps"]:
        del dep["hash"]  # a DVC 2 entry: hashed after a CRLF conversion, not checked
    (locked_repo / "code.py").write_text("print(5)\n")
    rev = _commit(locked_repo, "dvc.lock", yaml.safe_dump(lock))
    assert stale_dependency(tree, rev, "metrics/evaluation.json") is None


def test_stale_runs_are_left_out_one_line_each_unless_kept(capsys):
    from headpose.cli.compare import exclude_runs, leave_out_stale
    from headpose.compare.lock import StaleDependency

    fresh, stale, named = (_with(_run("x", [1, 2, 3]), name=n, rev=n * 8) for n in "abc")
    difference = StaleDependency("code.py", "1" * 32, "2" * 32)
    found = [(stale, difference), (named, difference)]
    runs = exclude_runs([fresh, stale, named], ["c" * 7])  # a stale run named by --exclude
    assert leave_out_stale(runs, found, keep=False) == [fresh]
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "excluded c (ccccccc), as asked",
        f"left out b (bbbbbbb): dvc.lock records {'1' * 32} for code.py, the commit holds "
        f"{'2' * 32}; pass --keep-stale to keep it",
    ]
    assert leave_out_stale(runs, found, keep=True) == [fresh, stale]
    assert capsys.readouterr().err.startswith("kept b (bbbbbbb) (--keep-stale): dvc.lock records")


@pytest.mark.slow
def test_compare_leaves_out_a_commit_whose_lock_predates_its_code(tmp_path, capsys):
    """A real dvc repro (a file and a folder dependency) agrees with our hashes; the next
    commit edits the folder and a param without re-running: its results (the older code's,
    under the new head) are left out in one line, the workspace holding it too, and kept
    with --keep-stale."""
    repo = tmp_path / "repo"
    (repo / "lib" / "sub").mkdir(parents=True)
    (repo / "lib" / "a.py").write_text("A = 1\n")
    (repo / "lib" / "sub" / "b.py").write_text("B = 2\n")
    _git(repo, "init", "-q")
    _dvc(repo, "init", "-q")
    (repo / "params.yaml").write_text("train_seed: 0\nhead: bins\n")
    (repo / "evaluate.py").write_text(STAGE_SCRIPT)
    dvc_yaml = DVC_YAML.replace("deps: [evaluate.py]", "deps: [evaluate.py, lib]")
    (repo / "dvc.yaml").write_text(dvc_yaml)
    _dvc(repo, "repro", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    fresh = _git(repo, "rev-parse", "HEAD").strip()
    assert stale_dependency(GitTree(repo), fresh, "metrics/evaluation.json") is None
    (repo / "params.yaml").write_text("train_seed: 0\nhead: rotation_6d\n")
    stale = _commit(repo, "lib/sub/b.py", "B = 3\n")  # code and params changed, no dvc repro
    arguments = ["compare", "--repo", str(repo), "--num", "2", "--json", "--baseline", "head=bins"]

    main(arguments)
    captured = capsys.readouterr()
    groups = json.loads(captured.out)["groups"]
    assert [[run["name"] for run in group["runs"]] for group in groups] == [[fresh[:7]]]
    held = _dvc_folder_md5(repo / "lib")
    left_out = [line for line in captured.err.splitlines() if line.startswith("left out")]
    assert len(left_out) == 2
    assert left_out[0] == (
        "left out workspace: dvc status: lib modified since dvc.lock was written; pass "
        "--keep-stale to keep it"
    )
    label = rf"(\w+ \({stale[:7]}\)|{stale[:7]})"  # the branch's name, or the commit
    assert re.fullmatch(
        rf"left out {label}: dvc.lock records \w+\.dir for lib, the commit holds {held}; "
        "pass --keep-stale to keep it",
        left_out[1],
    )

    main([*arguments, "--keep-stale"])
    captured = capsys.readouterr()
    groups = json.loads(captured.out)["groups"]
    names = [[run["name"] for run in group["runs"]] for group in groups]
    assert names == [[fresh[:7]], ["workspace"]]  # the stale commit is the workspace's run
    assert re.search(rf"^kept {label} \(--keep-stale\): dvc.lock records ", captured.err, re.M)
    assert "kept workspace (--keep-stale): dvc status: lib modified" in captured.err
