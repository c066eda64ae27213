"""One way to open a model file (:mod:`headpose.inference.loading`): ``headpose.load`` reaches
``torch.load`` in at most three calls, weights-only; a model file is checked once and read once,
head options of ``headpose evaluate`` included; every bad file is one line naming it; the
readers of model files below the opener are called by it alone; one module is named for
loading."""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from cli_fixtures import run_cli
from helpers import REPO_ROOT
from model_fixtures import write_checkpoint
from training_fixtures import write_tiny_dataset

import headpose
from headpose.errors import HeadposeError
from headpose.inference.loading import open_model
from headpose.inference.onnx_export import export_onnx
from headpose.io import files

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MOST_CALLS_TO_TORCH_LOAD = 3  # headpose.load -> open_model -> read_checkpoint -> torch.load
API_FILE = REPO_ROOT / "headpose" / "app" / "api.py"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint and its ONNX export."""
    folder = tmp_path_factory.mktemp("model_files")
    checkpoint = write_checkpoint(folder / "model.pt", "resnet18")
    opened = open_model(checkpoint, "torch", "cpu")
    export_onnx(opened.model, folder / "model.onnx", opened.description)
    return {"pt": checkpoint, "onnx": folder / "model.onnx"}


@pytest.fixture
def torch_loads(monkeypatch) -> list[tuple[Path, int, dict]]:
    """Every ``torch.load`` call from now on: (file, calls between it and ``headpose.load``, or
    -1 when not called from it, keyword arguments)."""
    calls = []
    real_load = torch.load

    def recording_load(file, *args, **kwargs):
        frames = inspect.stack(context=0)
        depth = next(
            (
                index
                for index, frame in enumerate(frames)
                if frame.function == "load" and Path(frame.filename) == API_FILE
            ),
            -1,
        )
        calls.append((Path(file), depth, kwargs))
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    return calls


@pytest.mark.slow
def test_headpose_load_reaches_torch_load_in_at_most_three_calls(model_files, torch_loads):
    model = headpose.load(model_files["pt"], device="cpu")
    assert model.runs_on == "cpu"
    (call,) = torch_loads
    path, depth, kwargs = call
    assert path == model_files["pt"]
    assert 1 <= depth <= MOST_CALLS_TO_TORCH_LOAD, f"{depth} calls from headpose.load to torch.load"
    assert kwargs["weights_only"] is True


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pt", "onnx"])
def test_a_model_file_is_checked_once(model_files, kind, monkeypatch):
    """Every module's ``file_problem`` (the readability check) is counted: one call names the
    model file, whether a checkpoint or an ONNX file, through the whole of ``headpose.load``."""
    checked = []
    real_check = files.file_problem

    def counting_check(path):
        checked.append(Path(path))
        return real_check(path)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("headpose") and (
            getattr(module, "file_problem", None) is real_check
        ):
            monkeypatch.setattr(module, "file_problem", counting_check)
    headpose.load(model_files[kind], device="cpu")
    assert checked.count(model_files[kind]) == 1, checked


@pytest.mark.slow
def test_evaluate_with_head_options_reads_the_checkpoint_once(
    model_files, torch_loads, tmp_path, capsys
):
    folder = tmp_path / "data"
    folder.mkdir()
    write_tiny_dataset(folder, 3)
    arguments = ["evaluate", str(model_files["pt"]), "--data", str(folder), "--workers", "1"]
    assert run_cli([*arguments, "--expectation", "lower_edges"]) == 0
    assert "lower_edges expectation" in capsys.readouterr().out
    assert [path for path, _, _ in torch_loads] == [model_files["pt"]]


def _copied(source: Path, target: Path) -> Path:
    shutil.copy(source, target)
    return target


def _truncated(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return target


def _hostile(target: Path) -> Path:
    torch.save({"state_dict": {}, "meta": Path("x")}, target)  # a pickled Python object
    return target


def _fifo(target: Path) -> Path:
    os.mkfifo(target)
    return target


def _folder(target: Path) -> Path:
    target.mkdir()
    return target


def _mismatched(target: Path) -> Path:
    path = write_checkpoint(target, "resnet18")
    content = torch.load(path, weights_only=True)
    content["meta"]["num_bins"] = 198
    torch.save(content, path)
    return path


BAD_FILES = {
    "missing.pt": (lambda folder, good: folder / "missing.pt", "does not exist"),
    "folder.pt": (lambda folder, good: _folder(folder / "folder.pt"), "is a folder"),
    "fifo.pt": (lambda folder, good: _fifo(folder / "fifo.pt"), "is not a regular file"),
    "fifo.onnx": (lambda folder, good: _fifo(folder / "fifo.onnx"), "is not a regular file"),
    "cut.pt": (
        lambda folder, good: _truncated(good["pt"], folder / "cut.pt"),
        "not a readable weights-only PyTorch checkpoint",
    ),
    "cut.onnx": (
        lambda folder, good: _truncated(good["onnx"], folder / "cut.onnx"),
        "is not a loadable ONNX model",
    ),
    "hostile.pt": (lambda folder, good: _hostile(folder / "hostile.pt"), "holds Python objects"),
    "mismatched.pt": (
        lambda folder, good: _mismatched(folder / "mismatched.pt"),
        "meta says num_bins 198",
    ),
    "onnx_as.pt": (
        lambda folder, good: _copied(good["onnx"], folder / "onnx_as.pt"),
        "not a readable weights-only PyTorch checkpoint",
    ),
    "pt_as.onnx": (
        lambda folder, good: _copied(good["pt"], folder / "pt_as.onnx"),
        "is not a loadable ONNX model",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_every_bad_model_file_is_one_line_naming_it(name, model_files, tmp_path):
    make, message = BAD_FILES[name]
    path = make(tmp_path, model_files)
    for runtime in ("auto", "onnx") if path.suffix == ".pt" else ("auto",):
        with pytest.raises(HeadposeError) as refused:
            headpose.load(path, runtime=runtime, device="cpu")
        text = str(refused.value)
        assert message in text and str(path) in text and "\n" not in text, text


# The readers a model file goes through below the opener, and the only modules that call them
# (models/weights.py reads a ``pretrained:`` checkpoint into a network to train, not to predict).
READERS = {
    "read_checkpoint": {"headpose/inference/loading.py", "headpose/models/weights.py"},
    "network_from_checkpoint": {"headpose/inference/loading.py"},
    "read_onnx_metadata": {"headpose/inference/loading.py"},
}


def test_model_files_are_opened_by_the_one_opener_only():
    callers: dict[str, set[str]] = {name: set() for name in READERS}
    for path in [*(REPO_ROOT / "headpose").rglob("*.py"), *(REPO_ROOT / "stages").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                function = node.func
                name = function.attr if isinstance(function, ast.Attribute) else None
                name = function.id if isinstance(function, ast.Name) else name
                if name in READERS:
                    callers[name].add(path.relative_to(REPO_ROOT).as_posix())
    assert callers == READERS
    named_for_loading = sorted(
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "headpose").rglob("*.py")
        if "load" in path.stem
    )
    assert named_for_loading == ["headpose/inference/loading.py"]
