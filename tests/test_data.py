"""Sample lists, the prepared crops and the training/evaluation datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from geometry_helpers import loose_box
from training_fixtures import write_list, write_tiny_dataset

from headpose.data.crop import evaluation_crop, face_box
from headpose.data.pipeline import PoseDataset, evaluation_dataset
from headpose.data.store import STORE_ENV, PreparedCrops, StoreSpec, prepare_crops
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
        prepare_crops([str(tmp_path / "nothing_here")], StoreSpec(32, "hopenet", "eval"), 1)


@pytest.mark.parametrize("protocol", ["hopenet", "visible"])
def test_stored_eval_crop_is_the_direct_crop(aflw2000_dir, protocol):
    stems, _ = find_sample_stems(aflw2000_dir, recursive=False)
    paths = [str(aflw2000_dir / stem) for stem in stems[:6]]
    dataset = evaluation_dataset(paths, 64, protocol, workers=1)
    for index, path in enumerate(paths):
        annotation = read_annotation(path + ".mat")
        box = face_box(annotation, protocol)
        direct = evaluation_crop(read_image(path + ".jpg"), box, 64, protocol)
        image, angles = dataset[index]
        assert np.array_equal(image.numpy(), direct)
        assert angles.tolist() == pytest.approx(annotation.angles_deg, abs=1e-4)
    if protocol == "visible":  # the visible crop frames the visible landmarks' box
        assert box == loose_box(annotation.landmarks_xy - 1.0, 0.0, "eval")


def test_parallel_decoding_equals_serial(tmp_path, monkeypatch):
    stems = write_tiny_dataset(tmp_path, 70)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "serial"))
    spec = StoreSpec(32, "hopenet", "train")
    serial = prepare_crops(stems, spec, workers=1)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "parallel"))
    parallel = prepare_crops(stems, spec, workers=2)
    assert serial.images.filename != parallel.images.filename  # two builds
    assert np.array_equal(serial.images, parallel.images)
    assert np.array_equal(serial.angles_deg, parallel.angles_deg)


def _half_bright_crops(purpose: str = "train", protocol: str = "hopenet") -> PreparedCrops:
    """One face box (116, 116)-(132, 132) whose region (100, 100)-(148, 148) is stored at 48 px,
    its left half bright."""
    image = np.zeros((1, 48, 48, 3), dtype=np.uint8)
    image[0, :, :24] = 255  # left half bright
    return PreparedCrops(
        stems=["x"],
        images=image,
        face_boxes=np.array([[116, 116, 132, 132]], dtype=np.float64),
        regions=np.array([[100, 100, 148, 148]], dtype=np.float64),
        angles_deg=np.array([[30.0, 10.0, -20.0]], dtype=np.float32),
        spec=StoreSpec(32, protocol, purpose),
    )


def test_flip_negates_yaw_and_roll_and_mirrors_the_image():
    assert flip_angles(np.array([30.0, 10.0, -20.0])).tolist() == [-30.0, 10.0, 20.0]
    dataset = PoseDataset(_half_bright_crops())
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


@pytest.mark.parametrize("protocol", ["hopenet", "visible"])
def test_items_are_seeded_by_epoch_and_index(protocol):
    dataset = PoseDataset(_half_bright_crops("train", protocol), seed=3)
    dataset.set_epoch(5)
    first, _ = dataset[0]
    again, _ = dataset[0]
    assert torch.equal(first, again)
    draws = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        draws.add(dataset[0][0].numpy().tobytes())
    assert len(draws) > 1  # the crop changes from epoch to epoch
    evaluation = PoseDataset(_half_bright_crops("eval", protocol))
    evaluation.set_epoch(1)
    fixed, _ = evaluation[0]
    evaluation.set_epoch(2)
    assert torch.equal(fixed, evaluation[0][0])
