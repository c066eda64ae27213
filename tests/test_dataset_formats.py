"""Dataset formats in the pipeline: ``headpose evaluate --data`` on every built-in format, the
crop a stored box gives, and a new format added in one test module (its class and its
registration) running filelists -> train -> evaluate."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cli_fixtures import run_cli
from helpers import REPO_ROOT
from model_fixtures import write_checkpoint
from stage_fixtures import STAGES, load_stage
from training_fixtures import train_on_lists, write_tiny_dataset

from headpose.crops.pipeline import evaluation_dataset
from headpose.datasets import registry
from headpose.datasets.filelists import build_filelists, write_filelists
from headpose.datasets.registry import DatasetFormat, Labels, Scan, register_format
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import evaluate
from headpose.io.formats import read_list, read_sample, sample_header

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("m") / "model.pt", "resnet18", image_size=64)


def test_a_listed_box_is_the_crop_as_fsa_net_made_it(biwi_sample_dir):
    entry = f"{(biwi_sample_dir / 'hpdb').as_posix()}/01/frame_00003@270,177,146,180"
    crops = evaluation_dataset([entry], 64, "hopenet", workers=1).crops
    image = cv2.cvtColor(
        cv2.imread(str(biwi_sample_dir / "hpdb/01/frame_00003_rgb.png")), cv2.COLOR_BGR2RGB
    )
    expected = cv2.resize(image[177:357, 270:416], (64, 64))  # OpenCV's default: bilinear
    assert np.array_equal(crops.images[0], expected)
    assert crops.regions[0].tolist() == [270, 177, 416, 357]


@pytest.mark.parametrize("with_list", [False, True])
def test_evaluate_takes_a_biwi_folder(biwi_sample_dir, checkpoint, capsys, with_list):
    args = ["evaluate", str(checkpoint), "--data", str(biwi_sample_dir / "hpdb")]
    if with_list:
        args += ["--frame-list", str(biwi_sample_dir / "lists" / "Biwi_FSA-Net.npz")]
    assert run_cli(args) == 0
    out, err = capsys.readouterr()
    assert "1 samples" in out and "Traceback" not in err
    # the list's other 13,218 frames are not in the one-frame sample: each is reported
    assert err.count("not found") == (13218 if with_list else 0)


def test_evaluate_takes_an_fsa_net_npz_and_refuses_a_frame_list_for_it(
    tmp_path, checkpoint, capsys
):
    crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    np.savez(tmp_path / "BIWI_test.npz", image=crops, pose=np.zeros((3, 3)), img_size=64)
    assert run_cli(["evaluate", str(checkpoint), "--data", str(tmp_path / "BIWI_test.npz")]) == 0
    assert "3 samples" in capsys.readouterr().out
    args = ["evaluate", str(checkpoint), "--data", str(tmp_path / "BIWI_test.npz")]
    assert run_cli([*args, "--frame-list", str(tmp_path / "x.npz")]) == 2
    assert "a frame list applies to BIWI folders, not biwi_npz" in capsys.readouterr().err


def test_a_stored_box_sample_trains_on_its_box_as_it_is_evaluated(biwi_sample_dir):
    from headpose.crops.pipeline import training_dataset
    from headpose.crops.training_batches import augmented_crops

    entry = f"{(biwi_sample_dir / 'hpdb').as_posix()}/01/frame_00003@270,177,146,180"
    regions = training_dataset([entry] * 8, 64, "hopenet", seed=3, workers=1)
    assert np.array_equal(regions.crops.regions[0], [270, 177, 416, 357])
    batch = regions[list(range(8))]
    plain = ~(batch.flipped | batch.blurred)
    assert plain.any()
    crops = augmented_crops(batch, 64, "hopenet", torch.device("cpu"))[plain]
    evaluation = torch.as_tensor(evaluation_dataset([entry], 64, "hopenet", workers=1)[0][0])
    expected = evaluation.permute(2, 0, 1).float().expand_as(crops)
    # the same box, resampled once more from the cached region: equal up to interpolation
    assert (crops - expected).abs().mean() < 4.0


# --- A format added in one place ----------------------------------------------------------------


@register_format
class PngJsonFormat(DatasetFormat):
    """A made-up format: ``NAME.png`` beside ``NAME.pose.json`` (angles and landmarks),
    entries ``<folder>/NAME.pose``."""

    name = "png_json_test"
    description = "NAME.png + NAME.pose.json"

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return root.is_dir() and any(root.glob("*.pose.json"))

    @classmethod
    def owns(cls, entry: str) -> bool:
        return entry.endswith(".pose")

    @classmethod
    def scan(cls, root: Path) -> Scan:
        names = sorted(path.name.removesuffix(".json") for path in root.glob("*.pose.json"))
        return Scan([(root / name).as_posix() for name in names])

    @classmethod
    def _labels(cls, entry: str) -> Labels:
        # Reuses the .mat validation through a converted copy: the point is the plumbing.
        content = json.loads(Path(entry + ".json").read_text())
        annotation, _ = sample_header(content["mat_twin"])
        return Labels(annotation.angles_deg, annotation=annotation)

    @classmethod
    def header(cls, entry: str) -> Labels:
        return cls._labels(entry)

    @classmethod
    def read(cls, entry: str) -> tuple[np.ndarray, Labels]:
        image = cv2.cvtColor(cv2.imread(entry.removesuffix(".pose") + ".png"), cv2.COLOR_BGR2RGB)
        return image, cls._labels(entry)

    @classmethod
    def digest(cls, entry: str) -> str:
        return Path(entry + ".json").read_text() + str(
            Path(entry.removesuffix(".pose") + ".png").stat().st_size
        )

    @classmethod
    def group_key(cls, entry: str) -> str:
        return Path(entry).name.split("_")[0]


def write_png_json_set(folder: Path, count: int, seed: int) -> Path:
    """``count`` samples of the made-up format, converted from tiny .jpg + .mat samples."""
    source = folder / "source"
    stems = write_tiny_dataset(source, count, seed=seed, size=60)
    out = folder / "png_json"
    out.mkdir()
    for index, stem in enumerate(stems):
        image, _ = read_sample(stem)
        name = f"g{index % 4}_{index:03d}"
        cv2.imwrite(str(out / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        (out / f"{name}.pose.json").write_text(json.dumps({"mat_twin": stem}))
    return out


@pytest.mark.slow
def test_a_format_in_one_module_runs_filelists_train_and_evaluate(tmp_path):
    train_root = write_png_json_set(tmp_path / "train", 24, seed=0)
    test_root = write_png_json_set(tmp_path / "test", 6, seed=1)
    assert registry.recognise(train_root) is PngJsonFormat

    lists = build_filelists(train_root, test_root, 99, 0.25, 0, workers=1)
    write_filelists(lists, tmp_path / "lists")

    assert all(entry.endswith(".pose") for entry in lists.train + lists.val + lists.test)
    groups = {Path(entry).name.split("_")[0] for entry in lists.val}
    assert groups and not groups & {Path(entry).name.split("_")[0] for entry in lists.train}
    model = train_on_lists(tmp_path / "lists")
    test = read_list(tmp_path / "lists" / "test.txt")
    result = evaluate(model, test, "test.txt", workers=1)
    assert result.metrics["count"] == 6 and np.isfinite(result.metrics["mae"]["mean"])


# --- Several test sets in the pipeline ----------------------------------------------------------


@pytest.mark.parametrize(
    ("test_sets", "message"),
    [
        ({"BIWI": {"data": "d", "frame_list": "none"}}, "test_sets name 'BIWI'"),
        ({"test": {"data": "d", "frame_list": "none"}}, "other than test"),
        ({"biwi": "data/BIWI"}, "test_sets.biwi is 'data/BIWI'; expected a mapping"),
        ({"biwi": {"data": "d"}}, "missing the key test_sets.biwi.frame_list"),
        ({"biwi": {"dta": "d", "frame_list": "none"}}, "did you mean test_sets.biwi.data"),
        ({"biwi": {"data": "a b", "frame_list": "none"}}, "test_sets.biwi.data is 'a b'"),
    ],
)
def test_test_sets_params_are_checked_in_one_line(test_sets, message):
    from headpose.params import load_params, validate

    params = load_params(REPO_ROOT / "params.yaml").as_dict()
    with pytest.raises(HeadposeError, match=re.escape(message)):
        validate({**params, "test_sets": test_sets})


def test_compare_reads_the_files_the_evaluate_set_stage_writes():
    from headpose.compare.runs import evaluation_files

    options = stage_options_raw("evaluate_set")
    assert evaluation_files("${key}") == (options["--metrics"], options["--per-image"])
    options = stage_options_raw("evaluate")
    assert evaluation_files() == (options["--metrics"], options["--per-image"])


def stage_options_raw(stage: str) -> dict[str, str]:
    """A stage's ``--option value`` pairs as dvc.yaml writes them, placeholders kept."""
    words = shlex.split(STAGES[stage]["cmd"])
    return dict(zip(words, words[1:], strict=False))


def test_the_evaluate_stage_scores_a_test_set_of_another_format(tmp_path, monkeypatch, capsys):
    from headpose.synth.biwi import generate_biwi

    hpdb = tmp_path / "BIWI" / "hpdb"
    generate_biwi(hpdb, sequences=1, frames_per_sequence=6, seed=0, workers=1)
    write_checkpoint(tmp_path / "models" / "model.pt", "resnet18", image_size=64,
                     training_mean_deg=[0.0, 0.0, 0.0])  # fmt: skip
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    stage = load_stage("evaluate")
    stage.main(
        ["--params", "params.yaml", "--checkpoint", "models/model.pt", "--data", "BIWI/hpdb",
         "--frame-list", "none", "--metrics", "metrics/test_sets/biwi.json",
         "--per-image", "data/evaluation/biwi.csv", "--plots", "plots/test_sets/biwi",
         "--timing", "timing/test_sets/biwi.json"]
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics/test_sets/biwi.json").read_text())
    assert metrics["count"] == 6 and metrics["skipped"] == 0
    assert "other_protocols" not in metrics and metrics["crop_protocol"] == "stored_box"
    assert np.isfinite(metrics["mae"]["mean"]) and not metrics["real_aflw2000"]
    assert len((tmp_path / "data/evaluation/biwi.csv").read_text().splitlines()) == 7
    assert "BIWI/hpdb" in capsys.readouterr().out
