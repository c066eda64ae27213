"""Sample lists, the prepared crops and the training/evaluation datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from geometry_helpers import loose_box
from training_fixtures import write_list, write_tiny_dataset

from headpose.data.crop import EVAL_K, crop_resized
from headpose.data.pipeline import PoseDataset, evaluation_dataset, preprocess
from headpose.data.store import STORE_ENV, PreparedCrops, prepare_crops
from headpose.errors import HeadposeError
from headpose.geometry import flip_angles
from headpose.io.formats import find_sample_stems, read_annotation, read_image, read_list


def test_read_list_rejects_missing_and_empty_lists(tmp_path):
    with pytest.raises(HeadposeError, match="does not exist"):
        read_list(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(HeadposeError, match="empty"):
        read_list(empty)
    assert read_list(write_list(tmp_path / "two.txt", ["a/b", "c"])) == ["a/b", "c"]


def test_missing_sample_names_its_file(tmp_path):
    with pytest.raises(HeadposeError, match=r"nothing_here\.(jpg|mat): .*file not found"):
        prepare_crops([str(tmp_path / "nothing_here")], 32, workers=1)


def test_cached_eval_crop_matches_a_direct_crop(aflw2000_dir):
    stems, _ = find_sample_stems(aflw2000_dir, recursive=False)
    paths = [str(aflw2000_dir / stem) for stem in stems[:6]]
    dataset = evaluation_dataset(paths, image_size=64, workers=1)
    for index, path in enumerate(paths):
        annotation = read_annotation(path + ".mat")
        box = loose_box(annotation.landmarks_xy - 1.0, EVAL_K, "eval")
        direct = preprocess(crop_resized(read_image(path + ".jpg"), box, 64))
        image, angles = dataset[index]
        image = preprocess(image.numpy())
        # Two resamplings instead of one: close, not equal.
        assert (image - direct).abs().mean() < 0.15
        assert angles.tolist() == pytest.approx(annotation.angles_deg, abs=1e-4)


def test_parallel_decoding_equals_serial(tmp_path, monkeypatch):
    stems = write_tiny_dataset(tmp_path, 70)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "serial"))
    serial = prepare_crops(stems, 32, workers=1)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "parallel"))
    parallel = prepare_crops(stems, 32, workers=2)
    assert serial.images.filename != parallel.images.filename  # two builds
    assert np.array_equal(serial.images, parallel.images)
    assert np.array_equal(serial.angles_deg, parallel.angles_deg)


def _half_bright_crops() -> PreparedCrops:
    image = np.zeros((1, 48, 48, 3), dtype=np.uint8)
    image[0, :, :24] = 255  # left half bright
    return PreparedCrops(
        stems=["x"],
        images=image,
        face_boxes=np.array([[16, 16, 32, 32]], dtype=np.float32),
        angles_deg=np.array([[30.0, 10.0, -20.0]], dtype=np.float32),
    )


def test_flip_negates_yaw_and_roll_and_mirrors_the_image():
    assert flip_angles(np.array([30.0, 10.0, -20.0])).tolist() == [-30.0, 10.0, 20.0]
    dataset = PoseDataset(_half_bright_crops(), image_size=32, augment=True)
    seen = set()
    for epoch in range(20):
        dataset.set_epoch(epoch)
        image, angles = dataset[0]
        left, right = image[:, :8].float().mean(), image[:, -8:].float().mean()  # (S, S, 3)
        flipped = angles.tolist() == [-30.0, 10.0, 20.0]
        assert flipped or angles.tolist() == [30.0, 10.0, -20.0]
        assert (right > left) if flipped else (left > right)
        seen.add(flipped)
    assert seen == {True, False}


def test_items_are_seeded_by_epoch_and_index():
    dataset = PoseDataset(_half_bright_crops(), image_size=32, augment=True, seed=3)
    dataset.set_epoch(5)
    first, _ = dataset[0]
    again, _ = dataset[0]
    assert torch.equal(first, again)
    draws = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        draws.add(dataset[0][0].numpy().tobytes())
    assert len(draws) > 1  # the crop changes from epoch to epoch
    evaluation = PoseDataset(_half_bright_crops(), image_size=32, augment=False)
    evaluation.set_epoch(1)
    fixed, _ = evaluation[0]
    evaluation.set_epoch(2)
    assert torch.equal(fixed, evaluation[0][0])
