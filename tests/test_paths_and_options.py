"""Issue 23: dataset paths reach the stage commands unchanged, a pretrained file is tracked by
content, and every numeric option or params combination a run cannot use is one line.

The DVC cases run real ``dvc`` in a throwaway git copy of the project (a few seconds each).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_fixtures import run_cli
from helpers import REPO_ROOT, dvc
from model_fixtures import write_checkpoint
from stage_fixtures import STAGES, commit_all, copy_source_tree
from training_fixtures import write_tiny_dataset

from headpose.app.detect import usable_box
from headpose.errors import HeadposeError
from headpose.io.images import write_jpeg
from headpose.io.lists import read_list
from headpose.params import PRETRAINED_DIR, load_params, validate

HOSTILE_DATASET_PATHS = {
    "command": "data/x;touch INJECTED;#",
    "expansion": "data/$SUB",
    "space": "data/my set",
    "quote": "data/it's",
    "option": "--help",
}


def default_params(**overrides) -> dict:
    return {**load_params(REPO_ROOT / "params.yaml").as_dict(), **overrides}


# --- Dataset paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(HOSTILE_DATASET_PATHS))
@pytest.mark.parametrize("key", ["train_data", "test_data"])
def test_a_dataset_path_a_shell_would_change_is_refused_naming_the_key(key, kind):
    value = HOSTILE_DATASET_PATHS[kind]
    with pytest.raises(HeadposeError) as error:
        validate(default_params(**{key: value}))
    message = str(error.value)
    assert message.startswith(f"params.yaml: {key} is {value!r}; expected a folder path")
    assert "\n" not in message


def test_ordinary_dataset_paths_pass():
    for value in ("data/synth/300W_LP", "/abs/300W_LP-v2.0", "../shared/data/AFLW2000"):
        validate(default_params(train_data=value, test_data=value))


@pytest.mark.slow
@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_dvc_repro_stops_before_any_command_runs_an_injected_path(tmp_path):
    project = tmp_path / "project"
    copy_source_tree(project)
    params = (project / "params.yaml").read_text(encoding="utf-8")
    hostile = "train_data: 'data/x;touch INJECTED;#'"
    (project / "params.yaml").write_text(
        params.replace("train_data: data/synth/300W_LP", hostile), encoding="utf-8"
    )
    commit_all(project)
    result = dvc(project, "repro")
    assert result.returncode != 0
    assert not (project / "INJECTED").exists()
    assert not (project / "data" / "synth" / "300W_LP").exists()  # nothing after params ran
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: params.yaml: train_data is 'data/x;touch INJECTED;#'; expected a folder path of "
        "letters, digits and _ . , + = @ / : - only (the stage commands pass it through a shell; "
        "rename or link the folder)"
    ], result.stderr


# --- pretrained: tracked by content -------------------------------------------------------------


def test_a_pretrained_checkpoint_must_lie_in_the_tracked_folder():
    assert PRETRAINED_DIR in STAGES["train"]["deps"]
    for value in ("none", "imagenet", f"{PRETRAINED_DIR}/hopenet.pkl"):
        validate(default_params(pretrained=value))
    outside = ("models/model.pt", "/tmp/x.pt", "pretrainedx.pt", f"{PRETRAINED_DIR}/../m.pt")
    for value in (*outside, f"{PRETRAINED_DIR}/a b.pt", PRETRAINED_DIR):
        with pytest.raises(HeadposeError, match=f"pretrained is {value!r}; expected none"):
            validate(default_params(pretrained=value))


@pytest.mark.slow
@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_dvc_status_notices_a_replaced_pretrained_checkpoint(tmp_path):
    # the train stage's own deps on the pretrained folder, with a trivial command
    project = tmp_path / "project"
    (project / PRETRAINED_DIR).mkdir(parents=True)
    checkpoint = project / PRETRAINED_DIR / "start.pt"
    checkpoint.write_bytes(b"weights trained on one set")
    deps = [dep for dep in STAGES["train"]["deps"] if dep.split("/")[0] == PRETRAINED_DIR]
    stage = {"cmd": "echo trained > out.txt", "deps": deps, "outs": ["out.txt"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    commit_all(project)
    assert dvc(project, "init", "-q").returncode == 0
    assert dvc(project, "repro", "-q").returncode == 0
    assert "up to date" in dvc(project, "status").stdout
    checkpoint.write_bytes(b"weights trained on another set")  # same name, other content
    status = dvc(project, "status", "--json")
    assert status.returncode == 0
    assert "train" in status.stdout and "modified" in status.stdout, status.stdout


# --- Params combinations training cannot run ----------------------------------------------------


def test_batch_size_one_on_a_one_pixel_feature_map_names_both_keys():
    with pytest.raises(HeadposeError, match="batch_size 1 with image_size 32: BatchNorm"):
        validate(default_params(batch_size=1, image_size=32))
    validate(default_params(batch_size=1, image_size=64))  # a 2x2 map: trainable
    validate(default_params(batch_size=2, image_size=32))


# --- Command-line options -----------------------------------------------------------------------

OPTION_CASES = {  # name: (arguments, the option named)
    "predict batch 0": (["predict", "x.jpg", "--out", "o", "--batch-size", "0"], "--batch-size"),
    "predict batch -1": (["predict", "x.jpg", "--out", "o", "--batch-size", "-1"], "--batch-size"),
    "predict frames -1": (["predict", "x.jpg", "--out", "o", "--max-frames", "-1"], "--max-frames"),
    "predict score nan": (["predict", "x.jpg", "--out", "o", "--min-score", "nan"], "--min-score"),
    "benchmark threads 0": (["benchmark", "--threads", "0"], "--threads"),
    "benchmark runs 0": (["benchmark", "--runs", "0"], "--runs"),
    "benchmark size 8": (["benchmark", "--image-size", "8"], "--image-size"),
    "evaluate workers -3": (["evaluate", "m.pt", "--data", "d", "--workers", "-3"], "--workers"),
    "evaluate size 8": (["evaluate", "m.pt", "--data", "d", "--image-size", "8"], "--image-size"),
    "evaluate angle 0": (["evaluate", "m.pt", "--data", "d", "--max-angle", "0"], "--max-angle"),
    "evaluate width x": (["evaluate", "m.pt", "--data", "d", "--bin-width", "x"], "--bin-width"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_an_out_of_range_option_is_one_line_naming_it(case, capsys):
    arguments, option = OPTION_CASES[case]
    assert run_cli(arguments) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {option}: " in errors[0], err
    assert "expected" in errors[0]


# --- Detector boxes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [
        (float("nan"), 0, 10, 10),
        (0, 0, float("inf"), 10),
        (-14738.9, -6235.5, -14738.9 + 3e-10, -6224.8),  # YuNet on a shrunk 10000x50 panorama
        (5, 5, 5.5, 20),
        (60, 0, 80, 10),
    ],
)
def test_a_degenerate_or_non_finite_detector_box_is_not_used(box):
    assert not usable_box(box, 50, 40)
    assert usable_box((10, 5, 30, 35), 50, 40)


def test_predict_on_a_panorama_predicts_the_other_images(tmp_path, yunet_model, capsys):
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=32)
    inputs = tmp_path / "in"
    inputs.mkdir()
    aflw2000 = REPO_ROOT.parent / "shared" / "data" / "AFLW2000" / "image00002.jpg"
    if not aflw2000.is_file():
        pytest.skip(f"{aflw2000} is not available")
    (inputs / "face.jpg").write_bytes(aflw2000.read_bytes())
    write_jpeg(inputs / "panorama.jpg", np.full((50, 10000, 3), 128, dtype=np.uint8))
    out = tmp_path / "out"
    code = run_cli(
        ["predict", str(inputs), "--checkpoint", str(checkpoint), "--out", str(out)]
        + ["--detector", "yunet", "--detector-model", str(yunet_model)]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"error: {inputs / 'panorama.jpg'}: no face found" in err.splitlines()
    report = yaml.safe_load((out / "predictions.json").read_text())
    assert {Path(face["file"]).name for face in report["faces"]} == {"face.jpg"}


# --- Input paths that are no file ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "fifo", "missing"])
def test_a_folder_or_fifo_given_as_a_file_is_named_for_what_it_is(kind, tmp_path, capsys):
    path = tmp_path / "model.pt"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    expected = {
        "folder": "is a folder, not a file",
        "fifo": "is not a regular file (a FIFO, socket or device)",
        "missing": "does not exist",
    }[kind]
    data = tmp_path / "data"
    data.mkdir()
    write_tiny_dataset(data, 2)
    commands = {
        "predict": ["predict", str(data), "--checkpoint", str(path), "--out", "o"],
        "evaluate": ["evaluate", str(path), "--data", str(data), "--workers", "1"],
        "export": ["export", str(path), "--out", str(tmp_path / "m.onnx")],
    }
    for name, arguments in commands.items():
        assert run_cli(arguments) == 2, name
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert "Traceback" not in err and len(lines) == 1, (name, err)
        assert f"{path} {expected}" in lines[0], (name, lines[0])
    with pytest.raises(HeadposeError, match=f"sample list {path} {re.escape(expected)}"):
        read_list(path)
