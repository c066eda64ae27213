"""Bad input gives one line, never a traceback: every malformed sample is skipped and named,
every bad checkpoint, argument, params key or output problem is one line naming the file or
option and why.

Grouped by behaviour: malformed samples, checkpoints that contradict themselves, predict on bad
files, full disks and failing writes, bad command-line input, misspelt params keys, and file
names, folder modes and all-or-nothing outputs. The samples are tiny synthetic ones, so these
tests need no real data; the fuzz test (test_fuzz_samples.py) mutates the real ones.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from cli_fixtures import run_cli as exit_status
from helpers import REPO_ROOT, as_samples
from model_fixtures import checkpoint_meta, write_checkpoint
from protocol_fixtures import HOPENET, VISIBLE
from stage_fixtures import STAGES, load_stage, stage_command
from training_fixtures import write_list, write_tiny_dataset

from headpose.crops.store import prepare_crops
from headpose.crops.store.spec import StoreSpec
from headpose.datasets.filelists import build_filelists, write_filelists
from headpose.errors import HeadposeError
from headpose.io import files
from headpose.io.images import MAX_IMAGE_PIXELS
from headpose.models.checkpoints import save_checkpoint
from headpose.models.heads.bins import Bins
from headpose.models.network import build_model
from headpose.params import validate
from headpose.training.resume import RunState, load_resume, save_resume

IMAGE_SIZE = 32
TRAIN_STORE = StoreSpec(IMAGE_SIZE, HOPENET, "train")
pytestmark = pytest.mark.usefixtures("one_torch_thread", "few_timing_runs")


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``headpose ARGS`` run in this process."""
    code = exit_status(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, *names: str) -> str:
    """The single ``error:`` line of stderr, checked to name each of ``names``."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def forge_jpeg_size(path: Path, width: int, height: int) -> None:
    """Rewrite the frame header (SOF0) of a JPEG to claim ``width`` x ``height`` pixels."""
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def rewrite_mat(stem: str, **changes) -> None:
    """Change keys of a sample's .mat (a value of None removes the key)."""
    mat = {k: v for k, v in scipy.io.loadmat(stem + ".mat").items() if not k.startswith("__")}
    for key, value in changes.items():
        if value is None:
            mat.pop(key, None)
        else:
            mat[key] = value
    scipy.io.savemat(stem + ".mat", mat)


def datasets(tmp_path: Path, count: int = 4) -> tuple[Path, Path, list[str], list[str]]:
    """A 300W_LP-layout train folder and an AFLW2000-layout test folder of tiny samples."""
    train, test = tmp_path / "train", tmp_path / "test"
    (train / "AFW").mkdir(parents=True)
    test.mkdir()
    train_stems = write_tiny_dataset(train / "AFW", count, seed=1)
    test_stems = write_tiny_dataset(test, count, seed=2)
    return train, test, train_stems, test_stems


def skipped_reasons(lists) -> dict[str, str]:
    return {sample: reason for sample, _, reason in lists.skipped}


# --- Malformed samples are skipped by the file lists, named by every reader -----------------------

MALFORMED_MATS = {
    "pose_as_text": ({"Pose_Para": "0.1 0.2 0.3"}, "Pose_Para holds <U"),
    "pose_as_cell": (
        {"Pose_Para": np.array([np.zeros((1, 7)), "x"], dtype=object)},
        "Pose_Para holds object values",
    ),
    "pt2d_as_text": ({"pt2d": "not landmarks"}, "pt2d holds <U"),
    "pt2d_as_cell": ({"pt2d": np.array([np.zeros(3), "y"], dtype=object)}, "pt2d holds object"),
    "pt2d_wrong_shape": ({"pt2d": np.ones((3, 5))}, "pt2d has shape (3, 5)"),
    "pose_huge_angle": (
        {"Pose_Para": np.array([[1e30, 0, 0, 0, 0, 0, 1]])},
        "is no rotation angle",
    ),
}


def test_non_numeric_mat_values_are_skipped_and_named(tmp_path):
    train, test, train_stems, test_stems = datasets(tmp_path, 3 + len(MALFORMED_MATS))
    bad = dict(zip(MALFORMED_MATS, train_stems[3:], strict=True))
    for name, stem in bad.items():
        rewrite_mat(stem, **MALFORMED_MATS[name][0])
    lists = build_filelists(train, test, 99, 0.3, 0, workers=1)
    reasons = skipped_reasons(lists)
    for name, stem in bad.items():
        assert MALFORMED_MATS[name][1] in reasons[Path(stem).as_posix()], (name, reasons)
    assert sorted(lists.train + lists.val) == sorted(Path(s).as_posix() for s in train_stems[:3])
    assert sorted(lists.test) == sorted(Path(s).as_posix() for s in test_stems)


def test_samples_that_would_crash_training_are_skipped_and_named(tmp_path):
    train, test, train_stems, _ = datasets(tmp_path, 6)
    huge, far, point = train_stems[3:]
    forge_jpeg_size(Path(huge + ".jpg"), 65000, 65000)
    landmarks = np.random.default_rng(0).uniform(12, 28, (2, 68))
    far_landmarks = landmarks.copy()
    far_landmarks[0, :10] = 1e7
    rewrite_mat(far, pt2d=far_landmarks)
    rewrite_mat(point, pt2d=np.full((2, 68), 20.0))
    lists = build_filelists(train, test, 99, 0.3, 0, workers=1)
    reasons = skipped_reasons(lists)
    assert "65000x65000" in reasons[Path(huge).as_posix()]
    assert "far outside the 40x40 image" in reasons[Path(far).as_posix()]
    assert "span 0 x 0 pixels" in reasons[Path(point).as_posix()]
    assert len(lists.train + lists.val) == 3
    # the training input refuses each with one message naming its file (no OpenCV error, no
    # out-of-memory resize, no "empty crop box")
    for stem, name in ((huge, ".jpg"), (far, ".mat"), (point, ".mat")):
        with pytest.raises(HeadposeError, match=Path(stem).name + name.replace(".", r"\.")):
            prepare_crops(as_samples([stem]), TRAIN_STORE, workers=1)
    assert len(prepare_crops(as_samples(lists.train + lists.val), TRAIN_STORE, workers=1)) == 3


# --- Checkpoints whose meta disagrees with their weights ------------------------------------------


def hostile_checkpoint(folder: Path, name: str, **meta_changes) -> Path:
    """A valid tiny checkpoint whose meta is then changed (the weights stay 66 bins)."""
    path = write_checkpoint(folder / f"{name}.pt", "resnet18", image_size=IMAGE_SIZE)
    content = torch.load(path, weights_only=True)
    content["meta"].update(meta_changes)
    torch.save(content, path)
    return path


HOSTILE_METAS = {
    "bins198": ({"num_bins": 198}, "meta says num_bins 198, but its head weights hold 66 bins"),
    "width1": ({"bin_width": 1}, "bin_width 1 with 66 bins"),
    "expectation": ({"expectation": "median"}, "expectation 'median' is none of"),
    "size7": ({"image_size": 7}, "image_size 7; expected an integer in [32, 1024]"),
    "arch": ({"arch": "resnet9000"}, "unknown arch 'resnet9000'"),
}


@pytest.fixture(scope="module")
def hostile_checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {
        name: hostile_checkpoint(folder, name, **change)
        for name, (change, _) in HOSTILE_METAS.items()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("small_set")
    return folder, write_tiny_dataset(folder, 3)


@pytest.mark.parametrize("name", sorted(HOSTILE_METAS))
def test_a_checkpoint_whose_meta_contradicts_its_weights_is_one_line_in_every_command(
    name, hostile_checkpoints, small_set, tmp_path, capsys
):
    path, message = hostile_checkpoints[name], HOSTILE_METAS[name][1]
    folder, stems = small_set
    image = Path(stems[0] + ".jpg")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"file,x0,y0,x1,y1\n{image.name},10,10,30,30\n")
    commands = {
        "evaluate": ["evaluate", str(path), "--data", str(folder), "--workers", "1"],
        "predict": ["predict", str(image), "--checkpoint", str(path), "--boxes", str(boxes)]
        + ["--out", str(tmp_path / "out")],
        "export": ["export", str(path), "--out", str(tmp_path / "m.onnx")],
        "benchmark": ["benchmark", "--checkpoints", str(path), "--archs"],
    }
    for command, arguments in commands.items():
        code, _, err = run_cli(arguments, capsys)
        assert code == 2, (command, err)
        assert message in one_error_line(err, path), command
    with pytest.raises(HeadposeError, match=message.replace("[", r"\[").replace("(", r"\(")):
        build_model("resnet18", Bins(3), pretrained=str(path))


def test_a_resume_file_that_does_not_fit_is_ignored(tmp_path, capsys):
    model = build_model("resnet18", Bins(3))
    other = build_model("resnet18", Bins(6))
    optimizer = torch.optim.SGD(other.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    path = tmp_path / "train.pt"
    save_resume(path, "abc", RunState(), "phase1", model=other, optimizer=optimizer, scaler=scaler)
    assert load_resume(path, "abc", build_model("resnet18", Bins(6))) is not None
    assert load_resume(path, "abc", model) is None
    assert "do not fit the model" in capsys.readouterr().out


# --- Predict on a folder holding things that are no images ----------------------------------------


def test_predict_reports_bad_files_and_predicts_the_rest(small_set, tmp_path, capsys):
    _, stems = small_set
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(stems[0] + ".jpg", inputs / "good.jpg")
    (inputs / "a.jpg").mkdir()
    (inputs / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    shutil.copy(stems[1] + ".jpg", inputs / "huge.jpg")
    forge_jpeg_size(inputs / "huge.jpg", 40000, 40000)  # 1.6e9 pixels > 2^30
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(
        "file,x0,y0,x1,y1\n" + "".join(f"{name},10,10,30,30\n" for name in ("good.jpg", "huge.jpg"))
    )
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["predict", str(inputs), "--checkpoint", str(checkpoint), "--boxes", str(boxes)]
        + ["--out", str(out)],
        capsys,
    )
    assert code == 1 and "Traceback" not in err
    report = json.loads((out / "predictions.json").read_text())
    assert [Path(face["file"]).name for face in report["faces"]] == ["good.jpg"]
    errors = "\n".join(report["errors"])
    assert f"{inputs / 'a.jpg'}: not a regular file" in errors
    assert f"{inputs / 'broken.jpg'}: a broken link" in errors
    assert f"{inputs / 'huge.jpg'}: the image header claims 40000x40000" in errors
    assert len(report["errors"]) == 3
    assert 40000 * 40000 > 2**30 > MAX_IMAGE_PIXELS


# --- A full disk or a failing write names the file and why ----------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic output's temporary file is a link to /dev/full: writes fail with ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available on this system")

    def temporary_on_full_device(target: Path) -> Path:
        link = target.parent / f".{target.name}.full"
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/full")
        return link

    monkeypatch.setattr(files, "_temporary_file", temporary_on_full_device)


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path, full_disk):
    model = build_model("resnet18", Bins(3))
    meta = checkpoint_meta("resnet18", 66, IMAGE_SIZE)
    target = tmp_path / "models" / "model.pt"
    with pytest.raises(HeadposeError) as error:
        save_checkpoint(target, model, meta)
    assert str(error.value).startswith(f"cannot write {target}: No space left on device")
    assert not target.exists()
    with pytest.raises(HeadposeError, match="train.pt: No space left on device"):
        save_resume(tmp_path / "train.pt", "x", RunState(), "phase1", model=model)


@pytest.fixture
def evaluate_stage_workspace(small_set, tmp_path, monkeypatch):
    """A folder holding what the evaluate stage reads, and earlier outputs it would replace."""
    _, stems = small_set
    write_checkpoint(
        tmp_path / "models" / "model.pt", "resnet18", image_size=IMAGE_SIZE,
        training_mean_deg=[0.0, 0.0, 0.0],
    )  # fmt: skip
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "filelists").mkdir(parents=True)
    write_list(tmp_path / "data" / "filelists" / "test.txt", stems)
    # the crop stores exist before the disk fills
    for crop in (HOPENET, VISIBLE):
        prepare_crops(as_samples(stems), StoreSpec(IMAGE_SIZE, crop, "eval"), workers=1)
    old = {
        "metrics/evaluation.json": "old metrics\n",
        "data/evaluation/per_image.csv": "old csv\n",
        "plots/evaluation/yaw_error.png": "old plot\n",
    }
    for name, text in old.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    _, *arguments = stage_command("evaluate")
    return tmp_path, arguments, old


def assert_unchanged(folder: Path, old: dict[str, str]) -> None:
    for name, text in old.items():
        assert (folder / name).read_text() == text, name


def test_a_full_disk_during_evaluate_replaces_nothing(evaluate_stage_workspace, full_disk, capsys):
    folder, arguments, old = evaluate_stage_workspace
    with pytest.raises(SystemExit) as exit_info:
        load_stage("evaluate").main(arguments)
    assert exit_info.value.code == 2
    line = one_error_line(capsys.readouterr().err, "evaluation.json")
    assert "No space left on device" in line
    assert_unchanged(folder, old)


def test_an_unexpected_os_error_is_one_line(tmp_path, capsys, monkeypatch):
    """An OSError that escapes the library still gives one line naming the file."""
    from headpose.cli import evaluate as evaluation

    def refuse(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.jpg"))

    monkeypatch.setattr(evaluation, "evaluation_samples", refuse)
    code, _, err = run_cli(["evaluate", str(tmp_path / "m.pt"), "--data", str(tmp_path)], capsys)
    assert code == 2
    assert "Permission denied" in one_error_line(err, tmp_path / "x.jpg")


# --- Bad command-line input -----------------------------------------------------------------------


@pytest.mark.parametrize("row", ["nan,10,30,30", "10,inf,30,30", "10,10,1e9,30", "-inf,1,2,3"])
def test_box_rows_that_are_no_pixel_positions_are_one_line(row, small_set, tmp_path, capsys):
    _, stems = small_set
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"file,x0,y0,x1,y1\nx.jpg,{row}\n")
    code, _, err = run_cli(
        ["predict", stems[0] + ".jpg", "--checkpoint", str(checkpoint), "--boxes", str(boxes)]
        + ["--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 2
    assert "must be finite pixel positions" in one_error_line(err, boxes, "row 1")


def test_a_box_far_outside_its_image_is_refused_before_cropping(small_set, tmp_path, capsys):
    _, stems = small_set
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    image = Path(stems[0] + ".jpg")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"file,x0,y0,x1,y1\n{image.name},0,0,1e8,1e8\n")
    code, _, err = run_cli(
        ["predict", str(image), "--checkpoint", str(checkpoint), "--boxes", str(boxes)]
        + ["--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 1 and "Traceback" not in err
    assert "far outside the 40x40 image" in err


@pytest.mark.parametrize(
    ("device", "message"),
    [("banana", "--device 'banana' is no device"), ("cuda", "no CUDA GPU is available here")],
)
def test_an_unknown_or_missing_device_is_one_line(device, message, small_set, tmp_path, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is valid here")
    _, stems = small_set
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    code, _, err = run_cli(
        ["predict", stems[0] + ".jpg", "--checkpoint", str(checkpoint), "--device", device]
        + ["--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 2
    assert message in one_error_line(err)


def test_export_onto_an_existing_folder_is_refused(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    (tmp_path / "existing").mkdir()
    code, _, err = run_cli(["export", str(checkpoint), "--out", str(tmp_path / "existing")], capsys)
    assert code == 2
    assert "it is a folder" in one_error_line(err, tmp_path / "existing")


# --- Misspelt params keys -------------------------------------------------------------------------


def repo_params() -> dict:
    import yaml

    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def test_unknown_params_keys_name_the_closest_known_key():
    params = repo_params()
    params["bin_widht"] = 1
    with pytest.raises(
        HeadposeError, match=r"unknown key bin_widht in params.yaml; did you mean bin_width\?"
    ):
        validate(params)
    params = repo_params()
    params["synth"]["train_facez"] = 10
    with pytest.raises(HeadposeError, match=r"did you mean synth.train_faces\?"):
        validate(params)
    params = repo_params()
    params["zzzzzz"] = 1
    with pytest.raises(HeadposeError, match="known keys: seed, train_data"):
        validate(params)


def test_the_params_stage_tracks_every_key_and_stops_dvc_repro(tmp_path, capsys):
    # DVC re-runs a stage whose whole params file is tracked whenever any key changes
    assert STAGES["params"]["params"] == [{"params.yaml": None}]
    text = (REPO_ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text + "bin_widht: 1\n")
    _, *arguments = stage_command("params")
    arguments[arguments.index("params.yaml")] = str(tmp_path / "params.yaml")
    with pytest.raises(SystemExit) as exit_info:
        load_stage("params").main(arguments)
    assert exit_info.value.code == 2
    assert "did you mean bin_width?" in one_error_line(capsys.readouterr().err, "bin_widht")


def test_dvc_repro_runs_the_params_stage_before_any_other():
    # the data stages check only the keys' types (headpose.params); the model names are checked
    # by the params stage, which must therefore run first
    from dvc.repo import Repo
    from dvc.repo.reproduce import plan_repro

    with Repo(str(REPO_ROOT)) as repo:
        order = [stage.name for stage in plan_repro(repo.index.graph)]
    assert order[0] == "params", order


# --- evaluate --data FOLDER says what it skipped --------------------------------------------------


def test_evaluate_on_a_folder_lists_what_it_skipped(tmp_path, capsys):
    folder = tmp_path / "aflw_like"
    folder.mkdir()
    stems = write_tiny_dataset(folder, 7)
    rewrite_mat(stems[5], Pose_Para=np.array([[math.nan, 0, 0, 0, 0, 0, 1]]))
    rewrite_mat(stems[6], pt2d=None)
    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=IMAGE_SIZE)
    code, out, err = run_cli(
        ["evaluate", str(checkpoint), "--data", str(folder), "--workers", "1"], capsys
    )
    assert code == 0 and "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2
    assert any(
        line.startswith(f"skipped {Path(stems[5]).as_posix()}: Pose_Para values are not finite")
        for line in skipped
    )
    assert any(Path(stems[6]).name in line and "no landmarks" in line for line in skipped)
    assert "5 samples (2 skipped" in out


# --- File names, folder modes, the weights-only message, all-or-nothing outputs -------------------


def test_a_line_break_in_a_file_name_is_refused_and_listed(tmp_path):
    train, test, train_stems, _ = datasets(tmp_path, 3)
    odd = train / "AFW" / "two\nlines"
    for suffix in (".jpg", ".mat"):
        shutil.copy(train_stems[0] + suffix, str(odd) + suffix)
    lists = build_filelists(train, test, 99, 0.3, 0, workers=1)
    assert all("\n" not in sample for sample in lists.train + lists.val + lists.test)
    assert "line break" in skipped_reasons(lists)[odd.as_posix()]
    write_filelists(lists, tmp_path / "lists")
    skipped = (tmp_path / "lists" / "skipped.tsv").read_text().splitlines()
    assert any(line.startswith(f"{(train / 'AFW' / 'two lines').as_posix()}\t") for line in skipped)


def test_output_folders_get_normal_modes(tmp_path):
    old_mask = os.umask(0o022)
    try:
        train, test, _, _ = datasets(tmp_path, 3)
        write_filelists(build_filelists(train, test, 99, 0.3, 0, workers=1), tmp_path / "lists")
        with files.atomic_outputs(tmp_path / "plots") as (plots,):
            plots.mkdir()
    finally:
        os.umask(old_mask)
    for folder in (tmp_path / "lists", tmp_path / "plots"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    assert stat.S_IMODE((tmp_path / "lists" / "train.txt").stat().st_mode) == 0o644


class _Payload:
    """A pickle that would create a file if it were ever unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_weights_only_refusal_gives_no_unsafe_advice(tmp_path, capsys):
    marker = tmp_path / "payload_ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"state_dict": {}, "meta": _Payload(marker)}, hostile)
    code, _, err = run_cli(["export", str(hostile), "--out", str(tmp_path / "m.onnx")], capsys)
    line = one_error_line(err, hostile)
    assert code == 2 and "holds Python objects" in line
    advice = line.replace(str(hostile), "")
    assert "weights_only" not in advice and "add_safe_globals" not in advice
    assert not marker.exists()


def test_evaluate_replaces_nothing_when_the_plots_folder_cannot_be_replaced(
    evaluate_stage_workspace, monkeypatch, capsys
):
    folder, arguments, old = evaluate_stage_workspace
    plots = folder / "plots" / "evaluation"
    real_access = os.access
    # a read-only folder, as any user but root sees it (root may write anywhere)
    monkeypatch.setattr(
        files.os,
        "access",
        lambda path, mode: Path(path).resolve() != plots and real_access(path, mode),
    )
    with pytest.raises(SystemExit) as exit_info:
        load_stage("evaluate").main(arguments)
    assert exit_info.value.code == 2
    assert "is not writable" in one_error_line(capsys.readouterr().err, "plots/evaluation")
    assert_unchanged(folder, old)
    assert not list(folder.rglob("*.tmp*")), "temporary outputs are cleaned up"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_evaluate_with_a_really_read_only_plots_folder(evaluate_stage_workspace, capsys):
    folder, arguments, old = evaluate_stage_workspace
    plots = folder / "plots" / "evaluation"
    plots.chmod(0o555)
    try:
        with pytest.raises(SystemExit):
            load_stage("evaluate").main(arguments)
    finally:
        plots.chmod(0o755)
    one_error_line(capsys.readouterr().err, "plots/evaluation")
    assert_unchanged(folder, old)
