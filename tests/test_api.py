"""The Python API (``headpose.load``) and self-describing ONNX files: the README's example runs
verbatim; a timm backbone with non-ImageNet normalisation predicts the same angles from its
checkpoint and from its ONNX export (fp32; int8 keeps the metadata); an ONNX file without
metadata is refused in one line naming the missing values and works once they are given."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from cli_fixtures import run_cli
from helpers import REPO_ROOT
from model_fixtures import write_checkpoint

import headpose
from headpose.app.detect import FaceBox
from headpose.deploy.export import quantize_onnx
from headpose.errors import HeadposeError
from headpose.inference.batches import crop_angles
from headpose.inference.metadata import ONNX_KEYS, PREFIX
from headpose.models.checkpoints import save_checkpoint
from headpose.models.heads.bins import Bins
from headpose.models.network import build_model
from headpose.models.registry import IMAGENET, get_arch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A small timm backbone whose pretrained config normalises by 0.5, not ImageNet's values.
TIMM_ARCH = "timm/tf_mobilenetv3_small_minimal_100"
IMAGE_SIZE = 48
FINGERPRINT = "0123abcd"
BOXES = [(40.0, 30.0, 100.0, 110.0), (130.0, 60.0, 180.0, 120.0), (20.0, 120.0, 70.0, 170.0)]


def readme_example() -> str:
    """The Python code block of the README's "Python API" section."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_runs_verbatim(tmp_path, aflw2000_dir, monkeypatch, capsys):
    (tmp_path / "models").mkdir()
    write_checkpoint(tmp_path / "models" / "best.pt", "resnet18", image_size=32)
    image = cv2.imread(str(aflw2000_dir / "image00013.jpg"))  # near-frontal: any detector finds it
    cv2.imwrite(str(tmp_path / "face.jpg"), cv2.resize(image, None, fx=0.5, fy=0.5))
    monkeypatch.chdir(tmp_path)
    code = readme_example()
    assert len(code.strip().splitlines()) <= 6
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines, "the example found no face"
    yaw, pitch, roll = (float(value) for value in lines[0].split()[:3])
    assert all(np.isfinite([yaw, pitch, roll]))


def test_importing_headpose_stays_cheap():
    script = "import sys, headpose; print('torch' in sys.modules, callable(headpose.load))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.split() == ["False", "True"]


@pytest.fixture(scope="module")
def timm_models(tmp_path_factory) -> dict[str, Path]:
    """An untrained timm checkpoint (normalisation 0.5, the visible crop, a fingerprint) with
    output layers scaled so its angles spread, and its export by ``headpose export``."""
    folder = tmp_path_factory.mktemp("timm")
    torch.manual_seed(0)
    network = build_model(TIMM_ARCH, Bins(3))
    with torch.no_grad():
        for name in ("fc_yaw", "fc_pitch", "fc_roll"):
            getattr(network, name).weight.mul_(40.0)
    meta = {
        "arch": TIMM_ARCH,
        **Bins(3).meta(),
        "image_size": IMAGE_SIZE,
        "crop_protocol": "visible",
        **get_arch(TIMM_ARCH).normalization.meta(),
        "fingerprint": FINGERPRINT,
    }
    save_checkpoint(folder / "model.pt", network, meta)
    assert run_cli(["export", str(folder / "model.pt"), "--out", str(folder / "model.onnx")]) == 0
    return {"pt": folder / "model.pt", "onnx": folder / "model.onnx", "folder": folder}


@pytest.mark.slow
def test_export_writes_the_metadata_every_reader_needs(timm_models):
    props = {p.key: p.value for p in onnx.load(str(timm_models["onnx"])).metadata_props}
    assert {PREFIX + key for key in ONNX_KEYS} <= set(props)
    assert (
        props["headpose.mean"] == "[0.5, 0.5, 0.5]" and props["headpose.std"] == "[0.5, 0.5, 0.5]"
    )
    assert props["headpose.image_size"] == str(IMAGE_SIZE)
    assert props["headpose.crop_protocol"] == '"visible"'
    assert props["headpose.training_fingerprint"] == f'"{FINGERPRINT}"'
    assert '"order": ["yaw", "pitch", "roll"]' in props["headpose.output"]
    assert '"unit": "degrees"' in props["headpose.output"]
    assert '"head": "bins"' in props["headpose.head"]


def scene() -> np.ndarray:
    """A 200 x 200 RGB image with smooth structure (so crops differ between boxes)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    return cv2.resize(small, (200, 200), interpolation=cv2.INTER_CUBIC)


@pytest.mark.slow
def test_a_non_imagenet_timm_model_predicts_the_same_from_pt_and_onnx(timm_models):
    from_pt, from_onnx = headpose.load(timm_models["pt"]), headpose.load(timm_models["onnx"])
    assert from_onnx.runs_on == "onnxruntime (fp32)"
    for model in (from_pt, from_onnx):  # both describe themselves alike
        assert model.image_size == IMAGE_SIZE and model.crop_protocol.name == "visible"
        assert model.normalization.mean == (0.5, 0.5, 0.5)
        assert model.description.training_fingerprint == FINGERPRINT
    image = scene()
    poses = {
        name: m.predict(image, boxes=BOXES) for name, m in (("pt", from_pt), ("onnx", from_onnx))
    }
    angles = {
        name: np.array([[p.yaw_deg, p.pitch_deg, p.roll_deg] for p in found])
        for name, found in poses.items()
    }
    assert angles["pt"].shape == (len(BOXES), 3)
    assert [p.box for p in poses["onnx"]] == BOXES
    difference = np.abs(angles["pt"] - angles["onnx"]).max()
    assert difference < 0.01, difference
    assert np.ptp(angles["pt"], axis=0).max() > 1.0  # the faces do give different angles
    crops = from_pt.crops(image, [FaceBox(*box) for box in BOXES])
    np.testing.assert_allclose(from_onnx.predict_crops(crops), angles["pt"], atol=0.01)
    # Fed ImageNet's normalisation (what every .onnx got before), the same file answers otherwise.
    imagenet = crop_angles(from_onnx.loaded.predict, crops, IMAGENET)
    assert np.abs(imagenet - angles["onnx"]).max() > 0.5


@pytest.mark.slow
def test_int8_quantisation_keeps_the_metadata(timm_models):
    fp32, int8 = timm_models["onnx"], timm_models["folder"] / "model_int8.onnx"
    images = torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    quantize_onnx(fp32, int8, images)
    before = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    after = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert after.pop("headpose.precision") == '"int8"'
    before.pop("headpose.precision")
    assert {k: v for k, v in after.items() if k.startswith(PREFIX)} == {
        k: v for k, v in before.items() if k.startswith(PREFIX)
    }
    model = headpose.load(int8)
    assert model.runs_on == "onnxruntime (int8)" and model.normalization.mean == (0.5, 0.5, 0.5)


def without_metadata(source: Path, target: Path) -> Path:
    """A copy of an ONNX file as another exporter would write it: no headpose metadata."""
    proto = onnx.load(str(source))
    kept = [p for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(target))
    return target


@pytest.mark.slow
def test_an_onnx_without_metadata_needs_its_values_given(timm_models, tmp_path, capsys):
    foreign = without_metadata(timm_models["onnx"], tmp_path / "foreign.onnx")
    with pytest.raises(HeadposeError) as refused:
        headpose.load(foreign)
    message = str(refused.value)
    assert "\n" not in message and "records no headpose metadata" in message
    assert "give its mean, std, crop_protocol explicitly" in message
    with pytest.raises(HeadposeError, match="give its std explicitly"):
        headpose.load(foreign, mean=(0.5, 0.5, 0.5), crop_protocol="visible")

    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), scene())
    code = run_cli(
        ["predict", str(image), "--checkpoint", str(foreign), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "mean, std, crop_protocol" in errors[0], err
    assert "--mean, --std, --crop-protocol" in errors[0] and "Traceback" not in err

    given = headpose.load(foreign, mean=(0.5,) * 3, std=(0.5,) * 3, crop_protocol="visible")
    recorded = headpose.load(timm_models["onnx"])
    crops = recorded.crops(scene(), [FaceBox(*box) for box in BOXES])
    np.testing.assert_array_equal(given.predict_crops(crops), recorded.predict_crops(crops))


@pytest.mark.slow
def test_given_values_must_agree_with_recorded_ones(timm_models):
    with pytest.raises(HeadposeError, match=r"records mean \[0.5, 0.5, 0.5\]; \[0.485"):
        headpose.load(timm_models["onnx"], mean=IMAGENET.mean)
    with pytest.raises(HeadposeError, match="records std"):
        headpose.load(timm_models["pt"], std=IMAGENET.std)
    # the crop protocol is a choice: it replaces the recorded one
    chosen = headpose.load(timm_models["onnx"], crop_protocol="hopenet")
    assert chosen.crop_protocol.name == "hopenet"


@pytest.mark.slow
def test_bad_inputs_are_one_clear_error(timm_models, tmp_path):
    model = headpose.load(timm_models["pt"], device="cpu")
    (tmp_path / "notes.jpg").write_text("not an image")
    cases = [
        (lambda: headpose.load(tmp_path / "missing.pt"), "missing.pt does not exist"),
        (lambda: model.predict(tmp_path / "missing.jpg"), "missing.jpg does not exist"),
        (lambda: model.predict(tmp_path / "notes.jpg"), "notes.jpg"),
        (lambda: model.predict(np.zeros((10, 10), np.uint8)), "RGB uint8 of shape"),
        (lambda: model.predict(scene(), boxes=[(5, 5, 5, 9)]), "is empty"),
        (lambda: model.predict_crops(np.zeros((2, 32, 32, 3), np.uint8)), "(N, 48, 48, 3)"),
        (lambda: headpose.load(timm_models["pt"], runtime="tensorrt"), "runtime 'tensorrt'"),
    ]
    for call, message in cases:
        with pytest.raises(HeadposeError) as error:
            call()
        assert message in str(error.value) and "\n" not in str(error.value)
    assert model.predict(scene(), boxes=[]) == []
    assert model.predict_crops(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)).shape == (0, 3)


@pytest.mark.slow
def test_headpose_evaluate_scores_an_onnx_without_metadata_once_described(
    timm_models, tmp_path, capsys
):
    """The MAE table reads an .onnx exported elsewhere when --mean and --std describe it (its
    crop is the set's, --crop-protocol); without them, one line names what is missing."""
    from training_fixtures import write_tiny_dataset

    stems = write_tiny_dataset(tmp_path / "data", 6, size=80)
    listed = tmp_path / "test.txt"
    listed.write_text("".join(f"{stem}\n" for stem in stems), encoding="utf-8")
    foreign = without_metadata(timm_models["onnx"], tmp_path / "foreign.onnx")
    table = ["evaluate", "--data", str(listed), "--crop-protocol", "visible", "--workers", "1"]
    capsys.readouterr()
    assert run_cli([table[0], str(foreign), *table[1:]]) == 2
    err = capsys.readouterr().err
    assert "give its mean, std, crop_protocol explicitly" in err and "--mean, --std" in err, err
    assert "Traceback" not in err
    given = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]
    assert run_cli([table[0], str(foreign), *table[1:], *given]) == 0
    described = capsys.readouterr().out
    assert run_cli([table[0], str(timm_models["onnx"]), *table[1:]]) == 0
    recorded = capsys.readouterr().out
    rows = [
        [line for line in out.splitlines() if line.startswith("all ")]
        for out in (described, recorded)
    ]
    assert rows[0] and rows[0] == rows[1]
