"""Nothing silently wrong: cases where a run used to go on with the wrong input (a replaced
``pretrained:`` file resumed from, a checkpoint of a newer format read as ours, non-finite
model outputs reported as numbers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import write_checkpoint
from training_fixtures import write_tiny_dataset

from headpose.errors import HeadposeError
from headpose.inference.batches import predict_angles
from headpose.inference.runtime import finite_angles
from headpose.models.checkpoints import read_checkpoint
from headpose.models.registry import IMAGENET
from headpose.training.resume import pretrained_digest, run_fingerprint


def test_a_replaced_pretrained_file_is_another_run(tmp_path, monkeypatch):
    """kill -9 during a run with ``pretrained:``, replace the file, re-run: the resume file's
    fingerprint no longer matches, so training starts afresh from the new weights."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrained_checkpoints").mkdir()
    checkpoint = tmp_path / "pretrained_checkpoints" / "start.pt"
    checkpoint.write_bytes(b"first weights")
    pretrained = "pretrained_checkpoints/start.pt"
    record = {"pretrained": pretrained, "lr": 0.1}
    first = run_fingerprint(record, pretrained, "train", "val")
    assert run_fingerprint(record, pretrained, "train", "val") == first
    checkpoint.write_bytes(b"other weights")
    assert run_fingerprint(record, pretrained, "train", "val") != first
    assert pretrained_digest("none") == pretrained_digest("imagenet") == ""


@pytest.mark.parametrize("version", [2, 99])
def test_a_checkpoint_of_a_newer_format_is_refused(tmp_path, version):
    path = write_checkpoint(tmp_path / "model.pt", "resnet18")
    content = torch.load(path, weights_only=True)
    assert content["meta"]["format_version"] == 1
    read_checkpoint(path)  # ours reads
    content["meta"]["format_version"] = version
    torch.save(content, path)
    with pytest.raises(HeadposeError, match=f"format_version {version}, written by a newer"):
        read_checkpoint(path)
    content["meta"]["format_version"] = "1"
    torch.save(content, path)
    with pytest.raises(HeadposeError, match="format_version '1' is not a version"):
        read_checkpoint(path)
    del content["meta"]["format_version"]  # checkpoints from before the key: version 1
    torch.save(content, path)
    read_checkpoint(path)


def test_a_checkpoint_with_nan_weights_is_refused_naming_it(tmp_path):
    path = write_checkpoint(tmp_path / "model.pt", "resnet18")
    content = torch.load(path, weights_only=True)
    name = next(key for key, value in content["state_dict"].items() if value.is_floating_point())
    content["state_dict"][name] = torch.full_like(content["state_dict"][name], float("nan"))
    torch.save(content, path)
    with pytest.raises(HeadposeError, match=f"checkpoint {path}: weights {name} hold NaN"):
        read_checkpoint(path)


def test_non_finite_outputs_stop_every_report():
    """What any runtime answers (an ONNX file with NaN weights, an overflow) goes through
    ``finite_angles`` before it becomes a number in a table, a CSV or predictions.json; JSON
    metrics refuse NaN too (``NaN`` is no JSON)."""
    assert finite_angles(np.zeros((2, 3))).shape == (2, 3)
    with pytest.raises(HeadposeError, match="not finite for 1 of 2 inputs"):
        finite_angles(np.array([[0.0, 1.0, 2.0], [np.nan, 0.0, 0.0]]))
    batches = [(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), torch.zeros(2, 3))]
    with pytest.raises(HeadposeError, match="not finite"):
        predict_angles(lambda images: np.full((len(images), 3), np.inf), batches, IMAGENET)


def test_metrics_files_refuse_nan(tmp_path):
    from headpose.io.files import write_json

    with pytest.raises(HeadposeError, match="metrics.json: refusing to write a value that is not"):
        write_json(tmp_path / "metrics.json", {"mae": float("nan")})
    assert not (tmp_path / "metrics.json").exists()


def _fail_instead_of_hanging(seconds: int):
    import signal

    def interrupt(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)


@pytest.mark.parametrize("special", [".jpg", ".mat"])
def test_a_fifo_named_like_a_sample_file_is_skipped_with_its_reason(tmp_path, special):
    """A FIFO ``x.jpg`` beside ``x.mat`` (or the reverse) used to block the scan forever; now the
    sample is skipped with one reason and the good ones are used (filelists and evaluate scan
    alike)."""
    import os

    from headpose.evaluation.test_sets import evaluation_samples

    good = write_tiny_dataset(tmp_path, 2, size=60)
    bad = tmp_path / "x"
    other = ".mat" if special == ".jpg" else ".jpg"
    import shutil

    shutil.copy(good[0] + other, str(bad) + other)
    os.mkfifo(str(bad) + special)
    _fail_instead_of_hanging(30)
    try:
        stems, skipped = evaluation_samples(tmp_path)
    finally:
        import signal

        signal.alarm(0)
    assert sorted(sample.entry for sample in stems) == sorted(good)
    assert [sample for sample, _ in skipped] == ["x"] or [s for s, _ in skipped][0].endswith("x")
    assert "not a regular file" in skipped[0][1]


def test_a_list_of_file_names_says_to_drop_the_extension(tmp_path):
    from headpose.io.lists import read_list

    path = tmp_path / "list.txt"
    path.write_text("data/a\ndata/b.jpg\n")
    with pytest.raises(HeadposeError, match=r"line 2: 'data/b.jpg' names a file.*'data/b'"):
        read_list(path)


def _exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 40 x 60 JPEG whose left third is bright, tagged EXIF orientation 6 (shown turned by 90
    degrees); returns the stored pixels."""
    from PIL import Image

    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(image).save(path, exif=exif, quality=95)
    return image


def test_dataset_images_are_their_stored_pixels_whatever_exif_says(tmp_path):
    """A sample's landmarks and pose refer to the stored pixels (the published code reads them
    so): an EXIF orientation must not turn the image under its labels."""
    from headpose.datasets.mat import read_pair, write_mat

    stored = _exif_rotated_jpeg(tmp_path / "s.jpg")
    landmarks = np.array([[5.0, 30.0, 30.0], [5.0, 5.0, 30.0]])
    pose = np.array([[0.1, 0.2, 0.3, 20.0, 20.0, 0.0, 1e-3]])
    write_mat(tmp_path / "s.mat", {"Pose_Para": pose, "pt2d": landmarks})
    image, _ = read_pair(tmp_path / "s")
    assert image.shape == (40, 60, 3)
    assert image[:, :15].mean() > 200 and image[:, 25:].mean() < 50  # not turned
    assert np.abs(image.astype(int) - stored).mean() < 3  # the stored pixels (JPEG-rounded)


def test_photos_given_to_predict_are_turned_upright(tmp_path):
    from headpose.io.images import decode_rgb

    _exif_rotated_jpeg(tmp_path / "p.jpg")
    upright = decode_rgb(tmp_path / "p.jpg", upright=True)
    assert upright.shape == (60, 40, 3)  # as a viewer shows it: turned by 90 degrees
    assert upright[:15].mean() > 200 and upright[25:].mean() < 50


def test_a_one_sample_training_list_is_refused_in_one_line(tmp_path):
    """At 32 px the network ends on a 1x1 map, and one sample reached BatchNorm's "Expected more
    than 1 value per channel" deep in the first step."""
    from training_fixtures import tiny_settings, write_list

    from headpose.training.run import run_training
    from headpose.training.settings import TrainPaths

    stems = write_tiny_dataset(tmp_path, 3, size=60)
    paths = TrainPaths(
        write_list(tmp_path / "train.txt", stems[:1]),
        write_list(tmp_path / "val.txt", stems[1:]),
        tmp_path / "models",
        tmp_path / "resume.pt",
        tmp_path / "live",
    )
    with pytest.raises(HeadposeError, match="training list holds 1 sample.*at least 2"):
        run_training(tiny_settings(), paths)
    assert not (tmp_path / "models").exists()
