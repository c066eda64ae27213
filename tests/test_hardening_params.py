"""Issue 38, items 4, 5, 6, 7, 11 and 13: params.yaml and the project's text files under hostile
and clumsy input. Each class is tested where it lives: the one params loader (every stage reads
through it), the one numeric check of list items, the one bounded text reader
(:func:`headpose.io.text.read_text_file`, per kind of file), the structure bound of the YAML,
the shortened values in messages, the workers bound, test-set names, ``compare --test-set`` and
the message for a folder no dataset format recognises."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from cli_fixtures import run_cli
from helpers import REPO_ROOT
from stage_fixtures import STAGES, load_stage, stage_command

from headpose.app.detect import read_box_file
from headpose.datasets import registry
from headpose.datasets.biwi import read_calibration, read_pose_file
from headpose.datasets.filelists import read_angles_table
from headpose.errors import QUOTED_VALUE_CHARS, HeadposeError, shorten
from headpose.evaluation.test_sets import evaluation_samples
from headpose.io.lists import read_list
from headpose.io.text import read_text_file
from headpose.io.yaml_text import YAML_MAX_DEPTH, YAML_MAX_NODES, parse_yaml
from headpose.params import (
    MAX_WORKERS,
    PARAMS_MAX_BYTES,
    TEST_SET_NAME_MAX_CHARS,
    load_params,
    validate,
)

REPO_PARAMS_TEXT = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
# A message is one line of reasonable length, whatever the input.
MESSAGE_MAX_CHARS = 600


def _line_of(text: str, start: str) -> int:
    """The 1-based number of the first line of ``text`` starting with ``start``."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def _params_file(tmp_path: Path, text: str, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refused(call, *expected: str) -> str:
    """The message of the HeadposeError ``call()`` raises; it is one line of bounded length
    holding each of ``expected``."""
    with pytest.raises(HeadposeError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and len(message) <= MESSAGE_MAX_CHARS, message[:2000]
    for part in expected:
        assert part in message, (part, message)
    return message


# Item 4: a key given twice, at the top level or nested, is refused naming it and both lines.


def test_a_top_level_key_given_twice_is_refused_naming_both_lines(tmp_path):
    text = REPO_PARAMS_TEXT + "epochs: 7\n"
    first, second = _line_of(text, "epochs:"), len(text.splitlines())
    path = _params_file(tmp_path, text)
    _refused(lambda: load_params(path), str(path), "epochs", f"lines {first} and {second}")


def test_a_test_set_given_twice_is_refused_naming_its_path(tmp_path):
    extra = "  biwi:\n    data: elsewhere\n    frame_list: none\n"
    text = REPO_PARAMS_TEXT.replace("test_sets:\n", "test_sets:\n" + extra, 1)
    first = _line_of(text, "  biwi:")
    second = first + 3
    path = _params_file(tmp_path, text)
    _refused(lambda: load_params(path), "test_sets.biwi", f"lines {first} and {second}")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("synth:\n  mirror: true\n  mirror: false\n", "synth.mirror"),
        ("a:\n- {x: 1, x: 2}\n", "a[0].x"),
        ("a: 1\n'a': 2\n", "a"),  # quoted or not, the same key
    ],
)
def test_keys_given_twice_at_any_depth_are_refused(text, key):
    _refused(lambda: parse_yaml(text, "params.yaml"), f"the key {key} is given twice")


# Item 5: booleans are no numbers, in lists as elsewhere; nor are NaN and infinity.


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lr_steps", [True, 20]),
        ("aug_angles", [True, -20]),
        ("framing_scale", [True, 2]),
        ("bin_width", float("nan")),
        ("alpha", float("inf")),
        ("lr_steps", [float("nan")]),
    ],
)
def test_booleans_and_non_finite_numbers_are_refused_in_lists_and_keys(key, value):
    params = yaml.safe_load(REPO_PARAMS_TEXT)
    params[key] = value
    _refused(lambda: validate(params), f"{key} is ")


def test_a_boolean_in_a_synthetic_pose_range_is_refused():
    params = yaml.safe_load(REPO_PARAMS_TEXT)
    params["synth"]["train_pose"]["yaw"] = [True, 20]
    _refused(lambda: validate(params), "synth.train_pose.yaw is [True, 20]")


# Item 6: every text file is a regular file read with a size bound, per kind of file.


def _reader_cases(tmp_path: Path) -> dict:
    """Each kind of text file the project reads: (reader, a good file's text)."""
    hpdb = tmp_path / "hpdb" / "01"
    hpdb.mkdir(parents=True)
    return {
        "params": (load_params, REPO_PARAMS_TEXT),
        "sample list": (read_list, "a/b\n"),
        "angles table": (read_angles_table, "sample\tdataset\tyaw_deg\tpitch_deg\troll_deg\n"),
        "BIWI pose": (read_pose_file, "1 0 0\n0 1 0\n0 0 1\n\n1 2 3\n"),
        "BIWI calibration": (
            read_calibration,
            "517 0 320\n0 517 240\n0 0 1\n\n0 0 0 0\n\n1 0 0\n0 1 0\n0 0 1\n\n0 0 0\n\n640 480\n",
        ),
        "box file": (read_box_file, "file,x0,y0,x1,y1\na.jpg,1,2,3,4\n"),
    }


def _without_hanging(call, seconds: float = 20) -> BaseException | None:
    """Run ``call`` in a thread; the exception it raised (None if it returned). A call still
    running after ``seconds`` fails the test instead of hanging it."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still reading after {seconds} s"
    return outcome[0]


KINDS = ("params", "sample list", "angles table", "BIWI pose", "BIWI calibration", "box file")


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_text_file_reads_when_good(kind, tmp_path):
    reader, text = _reader_cases(tmp_path)[kind]
    path = tmp_path / "good.txt"
    path.write_text(text, encoding="utf-8")
    reader(path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("problem", ["/dev/zero", "fifo", "folder", "too large", "not UTF-8"])
def test_each_kind_of_text_file_is_a_bounded_regular_file(kind, problem, tmp_path):
    reader, text = _reader_cases(tmp_path)[kind]
    path = tmp_path / "file.txt"
    if problem == "/dev/zero":
        path.symlink_to("/dev/zero")
        expected = "is not a regular file"
    elif problem == "fifo":
        os.mkfifo(path)
        expected = "is not a regular file"
    elif problem == "folder":
        path.mkdir()
        expected = "is a folder, not a file"
    elif problem == "too large":
        with open(path, "wb") as handle:  # sparse: a size past any reader's bound, instantly
            handle.truncate(2**31)
        expected = "expected at most"
    else:
        path.write_bytes(text.encode() + b"# caf\xe9\n")
        expected = f"byte 0xe9 at offset {len(text.encode()) + 5}"
    started = time.monotonic()
    error = _without_hanging(lambda: reader(path))
    assert isinstance(error, HeadposeError), error
    message = str(error)
    assert str(path) in message and expected in message, message
    assert "\n" not in message and time.monotonic() - started < 5


def test_the_reader_reads_no_more_than_its_bound_plus_one_byte(tmp_path, monkeypatch):
    path = tmp_path / "grows.txt"
    path.write_bytes(b"x" * 100)
    read_sizes = []
    real_read = os.read

    def counting_read(descriptor: int, size: int) -> bytes:
        read_sizes.append(size)
        return real_read(descriptor, size)

    monkeypatch.setattr(os, "read", counting_read)
    monkeypatch.setattr(os, "fstat", lambda fd: SimpleNamespace(st_mode=0o100644, st_size=0))
    _refused(lambda: read_text_file(path, 10, "test file"), "larger than 10 bytes")
    assert sum(read_sizes) <= 11
    assert read_text_file(path, 100, "test file") == "x" * 100


# Item 7: the YAML's structure is bounded before values are built; messages stay short.


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 10)]
    bomb = "\n".join(lines) + "\naug_angles: *a9\n"  # 10**10 items, in about 700 bytes
    path = _params_file(tmp_path, REPO_PARAMS_TEXT.replace("aug_angles:", "old_angles:") + bomb)
    started = time.monotonic()
    _refused(lambda: load_params(path), str(path), "anchors (&name) and aliases")
    assert time.monotonic() - started < 5


def test_a_document_of_too_many_nodes_is_refused_before_values_are_built(tmp_path):
    items = ", ".join(["1"] * YAML_MAX_NODES)
    path = _params_file(tmp_path, REPO_PARAMS_TEXT + f"many: [{items}]\n")
    assert path.stat().st_size < PARAMS_MAX_BYTES
    _refused(lambda: load_params(path), f"more than {YAML_MAX_NODES:,}")


def test_a_48_mb_params_file_is_refused_by_its_size_at_once(tmp_path):
    path = tmp_path / "params.yaml"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("lr_steps: [")
        handle.write("1, " * (16 * 1024 * 1024))
        handle.write("1]\n")
    started = time.monotonic()
    _refused(lambda: load_params(path), str(path), "expected at most 1 MiB")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 2000 + "]" * 2000, f"nested more than {YAML_MAX_DEPTH} deep"),
        ("a:\n" + "".join("  " * n + "b:\n" for n in range(1, 40)), "nested more than"),
        ("epochs: " + "1" * 5000, "a value YAML cannot build"),
        ("epochs: 2020-13-45", "a value YAML cannot build"),
        ("epochs: 1\x00", "character U+0000"),
    ],
)
def test_yaml_that_cannot_be_built_is_one_line(text, expected):
    _refused(lambda: parse_yaml(text, "p.yaml"), "p.yaml", expected)


def test_a_number_too_long_to_print_is_named_without_a_traceback():
    params = yaml.safe_load(REPO_PARAMS_TEXT)
    params["alpha"] = 10**5000
    _refused(lambda: validate(params), "alpha is <a int too long to print>")


@pytest.mark.parametrize("key", ["aug_angles", "lr_steps", "arch", "crop_protocol", "plugins"])
def test_a_huge_value_is_quoted_short_in_the_message(key):
    params = yaml.safe_load(REPO_PARAMS_TEXT)
    params[key] = "x" * 10**6 if key in ("arch", "crop_protocol") else [True] * 10**6
    from headpose.crops.protocols import protocol_from_params
    from headpose.models.keys import validate_model_params

    def check() -> None:
        validate_model_params(validate(params))
        protocol_from_params(params["crop_protocol"])

    _refused(check, key)


def test_shorten_bounds_the_text_and_the_work():
    nested: list = [0]
    for _ in range(40):  # 2**40 leaves: a full repr would never end
        nested = [nested, nested]
    for value in (nested, "y" * 10**6, list(range(10**6)), {"k": nested}):
        assert len(shorten(value)) <= QUOTED_VALUE_CHARS
    assert shorten([1, 2.5, "a"]) == "[1, 2.5, 'a']"


def test_a_huge_unknown_key_is_named_short():
    params = yaml.safe_load(REPO_PARAMS_TEXT)
    params["k" * 10**5] = 1
    _refused(lambda: validate(params), "unknown key kkk")


# Item 11: bytes that are no UTF-8, and the workers bound.


@pytest.mark.parametrize("extra", [b"epochs: 1\xff\n", "# caf\u00e9\n".encode("latin-1")])
def test_a_byte_that_is_no_utf8_is_one_line_naming_the_file_and_offset(extra, tmp_path):
    data = REPO_PARAMS_TEXT.encode() + extra
    offset = len(REPO_PARAMS_TEXT.encode()) + next(i for i, byte in enumerate(extra) if byte > 127)
    path = tmp_path / "params.yaml"
    path.write_bytes(data)
    _refused(lambda: load_params(path), str(path), f"at offset {offset}", "UTF-8")


def test_workers_above_the_bound_are_refused_in_params_and_options(tmp_path, capsys):
    params = yaml.safe_load(REPO_PARAMS_TEXT)
    params["workers"] = MAX_WORKERS
    validate(params)
    params["workers"] = 100000
    _refused(lambda: validate(params), "workers is 100000", f"[0, {MAX_WORKERS}]")
    code = run_cli(["evaluate", "model.pt", "--data", str(tmp_path), "--workers", "100000"])
    err = capsys.readouterr().err
    assert code == 2 and "--workers" in err and f"[0, {MAX_WORKERS}]" in err, err


# Items 4, 6, 7, 11 through every stage script: one loader, one line each.

# name: (the file's bytes, what the message says)
BAD_PARAMS = {
    "duplicate": ((REPO_PARAMS_TEXT + "epochs: 7\n").encode(), "the key epochs is given twice"),
    "latin-1": (REPO_PARAMS_TEXT.encode() + "# caf\u00e9\n".encode("latin-1"), "byte 0xe9"),
    "alias": (
        (REPO_PARAMS_TEXT.replace("max_angle: 99", "max_angle: &m 99") + "x: *m\n").encode(),
        "aliases (*name) are not allowed",
    ),
    "workers": (
        REPO_PARAMS_TEXT.replace("workers: 0", "workers: 100000").encode(),
        "workers is 100000",
    ),
    "long test set": (
        REPO_PARAMS_TEXT.replace("  biwi:\n", "  " + "b" * 300 + ":\n").encode(),
        "test_sets name",
    ),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_refuses_bad_params_in_one_line(stage, tmp_path, capsys):
    main = load_stage(stage).main
    words = stage_command(stage, {"train_data": "x", "test_data": "y"})[1:]
    at = words.index("--params") + 1
    for name, (data, expected) in BAD_PARAMS.items():
        path = tmp_path / f"{name.replace(' ', '_')}.yaml"
        path.write_bytes(data)
        with pytest.raises(SystemExit) as stopped:
            main([*words[:at], str(path), *words[at + 1 :]])
        err = capsys.readouterr().err
        assert stopped.value.code == 2, (stage, name, err)
        assert len(err.strip().splitlines()) == 1 and expected in err, (name, err)
        assert "Traceback" not in err and len(err) <= MESSAGE_MAX_CHARS, (name, err)


def test_dev_zero_as_params_is_refused_at_once(tmp_path):
    path = tmp_path / "params.yaml"
    path.symlink_to("/dev/zero")
    error = _without_hanging(lambda: load_params(path))
    assert isinstance(error, HeadposeError) and "is not a regular file" in str(error)


# Item 13: test-set names that fit a file name, compare --test-set, unrecognised folders.


def test_a_test_set_name_longer_than_a_file_name_can_be_is_refused():
    params = yaml.safe_load(REPO_PARAMS_TEXT)
    entry = params["test_sets"].pop("biwi")
    params["test_sets"]["b" * TEST_SET_NAME_MAX_CHARS] = entry
    validate(params)
    params["test_sets"]["c" * 300] = entry
    message = _refused(lambda: validate(params), "test_sets name", "at most 64")
    assert "c" * 100 not in message


def test_compare_names_an_unknown_test_set_and_the_known_ones(tmp_path, monkeypatch, capsys):
    from dvc.repo.experiments.serialize import ExpState

    def data(test_sets: dict) -> SimpleNamespace:
        params = {"params.yaml": {"data": {"seed": 0, "test_sets": test_sets}}}
        return SimpleNamespace(params=params, metrics={})

    states = [
        ExpState("workspace", data=data({"biwi": {}})),
        ExpState("abc1234" * 5 + "abcde", data=data({"aflw_extra": {}, "biwi": {}})),
    ]

    class FakeRepo:
        def __init__(self, root: str) -> None:
            self.experiments = SimpleNamespace(show=lambda num: states)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

    monkeypatch.setattr("dvc.repo.Repo", FakeRepo)
    code = run_cli(["compare", "--repo", str(tmp_path), "--test-set", "nosuchset"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--test-set nosuchset" in err and "known test sets: aflw_extra, biwi" in err, err


def test_a_folder_no_format_recognises_says_what_each_format_expects(tmp_path):
    sequence = tmp_path / "hpdb" / "1"  # BIWI's sequence folders have two digits: 01
    sequence.mkdir(parents=True)
    for suffix in ("_rgb.png", "_pose.txt"):
        (sequence / f"frame_00003{suffix}").write_bytes(b"")
    (sequence / "rgb.cal").write_bytes(b"")
    message = _refused_long(lambda: evaluation_samples(tmp_path / "hpdb"))
    for dataset_format in registry.formats().values():
        assert dataset_format.description in message, (dataset_format.name, message)
    assert "two digits (01, not 1)" in message


def _refused_long(call) -> str:
    """The one-line message of the HeadposeError ``call()`` raises (any length)."""
    with pytest.raises(HeadposeError) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_stage_scripts_use_the_one_loader():
    """Every stage reads params.yaml through load_params (no second YAML reader)."""
    for path in sorted((REPO_ROOT / "stages").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert "yaml" not in source.replace("params.yaml", "").replace("dvc.yaml", ""), path
        assert "load_params(args.params)" in source, path


# Kernel files (/proc, /sys) are no input: training reads its memory limits from them.
OUTSIDE_THE_TEXT_RULE = {"headpose/training/memory.py"}


def test_every_text_file_goes_through_the_one_reader():
    """No module reads a file as text but :func:`read_text_file`: a new ``read_text`` call
    would bypass the regular-file check and the size bound."""
    offenders = []
    for root in ("headpose", "stages", "scripts"):
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            name = path.relative_to(REPO_ROOT).as_posix()
            if name in OUTSIDE_THE_TEXT_RULE:
                continue
            source = path.read_text(encoding="utf-8")
            if ".read_text(" in source or "json.load(" in source:
                offenders.append(name)
    assert offenders == []
