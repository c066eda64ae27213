"""Dataset formats in the pipeline: ``headpose evaluate --data`` on every built-in format, the
crop a stored box gives, and a new landmark format with its own file layout added in one test
module (its class and its registration) running filelists -> augment -> analyze -> train ->
evaluate and the framing sweep."""

from __future__ import annotations

import hashlib
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
from training_fixtures import train_on_lists, write_list

from headpose.crops.framing import NO_FRAMING
from headpose.crops.pipeline import evaluation_dataset
from headpose.crops.protocols import DEFAULT_PROTOCOL
from headpose.datasets import registry
from headpose.datasets.filelists import build_filelists, write_filelists
from headpose.datasets.labels import Labels, check_angles, check_landmarks
from headpose.datasets.registry import DatasetFormat, Scan, read_samples, register_format, resolve
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import evaluate
from headpose.inference.loading import open_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("m") / "model.pt", "resnet18", image_size=64)


def test_a_listed_box_is_the_crop_as_fsa_net_made_it(biwi_sample_dir):
    entry = f"{(biwi_sample_dir / 'hpdb').as_posix()}/01/frame_00003@270,177,146,180"
    crops = evaluation_dataset([resolve(entry)], 64, DEFAULT_PROTOCOL, workers=1).crops
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
    regions = training_dataset([resolve(entry)] * 8, 64, DEFAULT_PROTOCOL, seed=3, workers=1)
    assert np.array_equal(regions.crops.regions[0], [270, 177, 416, 357])
    batch = regions[list(range(8))]
    plain = ~(batch.flipped | batch.blurred)
    assert plain.any()
    crops = augmented_crops(batch, 64, DEFAULT_PROTOCOL, torch.device("cpu"))[plain]
    evaluation = evaluation_dataset([resolve(entry)], 64, DEFAULT_PROTOCOL, workers=1)
    evaluation = torch.as_tensor(evaluation[0][0])
    expected = evaluation.permute(2, 0, 1).float().expand_as(crops)
    # the same box, resampled once more from the cached region: equal up to interpolation
    assert (crops - expected).abs().mean() < 4.0


# --- A landmark format added in one place -------------------------------------------------------


@register_format
class PtsFormat(DatasetFormat):
    """A made-up landmark format with its own layout (no ``.mat``): ``NAME.png``, ``NAME.pts``
    (iBUG's text layout: ``version: 1``, ``n_points: N``, ``{``, one ``x y`` per line in 0-based
    pixel coordinates, ``}``) and ``NAME.angles`` (yaw pitch roll in degrees); the entry is
    ``<folder>/NAME.pts``. Its reader turns these into the project's labels (landmarks 1-based)
    and checks them with the checks every format shares."""

    name = "pts_test"
    description = "NAME.png + NAME.pts + NAME.angles"

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return root.is_dir() and any(root.glob("*.pts"))

    @classmethod
    def owns(cls, entry: str) -> bool:
        return entry.endswith(".pts")

    @classmethod
    def scan(cls, root: Path) -> Scan:
        return Scan(sorted(path.as_posix() for path in root.glob("*.pts")))

    @classmethod
    def header(cls, entry: str) -> Labels:
        lines = Path(entry).read_text().split("\n")
        count = int(lines[1].split(":")[1])
        points = np.array([line.split() for line in lines[3 : 3 + count]], dtype=np.float64)
        stem = entry.removesuffix(".pts")
        angles = check_angles(tuple(map(float, Path(stem + ".angles").read_text().split())), entry)
        height, width = cv2.imread(stem + ".png").shape[:2]
        check_landmarks(points + 1.0, entry, (width, height))
        return Labels(angles, landmarks_2d=points + 1.0)

    @classmethod
    def read(cls, entry: str) -> tuple[np.ndarray, Labels]:
        image = cv2.imread(entry.removesuffix(".pts") + ".png")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), cls.header(entry)

    @classmethod
    def image_file(cls, entry: str) -> str:
        return entry.removesuffix(".pts") + ".png"

    @classmethod
    def digest(cls, entry: str) -> str:
        stem = entry.removesuffix(".pts")
        return "".join(
            hashlib.sha256(Path(stem + suffix).read_bytes()).hexdigest()
            for suffix in (".pts", ".angles", ".png")
        )

    @classmethod
    def group_key(cls, entry: str) -> str:
        return Path(entry).name.split("_")[0]


def write_pts_set(folder: Path, count: int, seed: int) -> Path:
    """``count`` samples of the made-up format (random pixels, 68 points, angles)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index in range(count):
        name = folder / f"g{index % 4}_{index:03d}"
        cv2.imwrite(f"{name}.png", rng.integers(0, 256, (60, 60, 3), dtype=np.uint8))
        points = rng.uniform(18, 42, (68, 2))
        rows = "".join(f"{x:.3f} {y:.3f}\n" for x, y in points)
        Path(f"{name}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{rows}}}\n")
        Path(f"{name}.angles").write_text(" ".join(f"{a:.3f}" for a in rng.uniform(-40, 40, 3)))
    return folder


@pytest.mark.slow
def test_a_landmark_format_in_one_module_runs_the_whole_pipeline_and_the_sweep(tmp_path):
    """filelists, augment (300W_AUG copies written as .jpg + .mat), analyze (its framing),
    train, evaluate and the framing sweep, all through the format's Labels."""
    from headpose.crops.framing_stats import framing_distributions, measure_framing
    from headpose.crops.protocols import DEFAULT_PROTOCOL
    from headpose.crops.store import code_files
    from headpose.datasets.augment import build_augmentation
    from headpose.evaluation.framing_sweep import framing_sweep

    train_root = write_pts_set(tmp_path / "train", 24, seed=0)
    test_root = write_pts_set(tmp_path / "test", 6, seed=1)
    assert registry.recognise(train_root) is PtsFormat
    assert Path(__file__).resolve() in code_files(DEFAULT_PROTOCOL, [PtsFormat])

    lists = build_filelists(train_root, test_root, 99, 0.25, 0, workers=1)
    write_filelists(lists, tmp_path / "lists")
    assert all(entry.endswith(".pts") for entry in lists.train + lists.val + lists.test)
    groups = {Path(entry).name.split("_")[0] for entry in lists.val}
    assert groups and not groups & {Path(entry).name.split("_")[0] for entry in lists.train}

    train = read_samples(tmp_path / "lists" / "train.txt")
    augmented = build_augmentation(train, train_root, tmp_path / "aug", True, 0.5, [-10, 10], 99, 0)
    assert augmented.metrics["rotated_written"] == 2 * round(0.5 * len(train))
    rotated = read_samples(tmp_path / "aug" / "train.txt")[len(train) :]
    assert {sample.format.name for sample in rotated} == {"300w_lp"}  # 300W_AUG's own format
    first = augmented.angles[0]
    assert rotated[0].header().angles_deg == pytest.approx(first[2], abs=1e-4)

    test = read_samples(tmp_path / "lists" / "test.txt")
    measured = measure_framing(
        {"300W_AUG": read_samples(tmp_path / "aug" / "train.txt")}, test, 64, DEFAULT_PROTOCOL,
        NO_FRAMING, seed=0,
    )  # fmt: skip
    section = framing_distributions(measured, "300W_AUG", {})
    assert section["test"]["used"]["count"] == 6 and "inside" in section["test_inside"]

    write_list(
        tmp_path / "lists" / "train.txt",
        [s.entry for s in train] + augmented.combined[len(train) :],
    )
    model = train_on_lists(tmp_path / "lists")
    result = evaluate(open_model(model), test, "test.txt", workers=1)
    assert result.metrics["count"] == 6 and np.isfinite(result.metrics["mae"]["mean"])
    loaded = open_model(model)
    sweep = framing_sweep(
        loaded.predict, test, loaded.description.image_size, loaded.description.normalization,
        scales=(1.0, 1.5), shifts=(),
    )  # fmt: skip
    assert sweep.samples == 6 and all(np.isfinite(row.mae_mean) for row in sweep.rows)


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
