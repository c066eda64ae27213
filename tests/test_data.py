"""Sample lists, the prepared crops and the training/evaluation datasets."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_helpers import loose_box
from helpers import as_samples
from protocol_fixtures import HOPENET
from training_fixtures import write_list, write_tiny_dataset

from headpose.crops.pipeline import evaluation_dataset
from headpose.crops.protocols import get_protocol
from headpose.crops.store import prepare_crops
from headpose.crops.store.key import STORE_ENV
from headpose.crops.store.spec import StoreSpec
from headpose.datasets.mat import find_sample_stems, read_mat_labels
from headpose.errors import HeadposeError
from headpose.io.images import read_image
from headpose.io.lists import read_list


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
        prepare_crops(as_samples([tmp_path / "nothing_here"]), StoreSpec(32, HOPENET, "eval"), 1)


@pytest.mark.parametrize("name", ["hopenet", "visible"])
def test_stored_eval_crop_is_the_direct_crop(aflw2000_dir, name):
    protocol = get_protocol(name)
    stems, _ = find_sample_stems(aflw2000_dir, recursive=False)
    paths = [str(aflw2000_dir / stem) for stem in stems[:6]]
    dataset = evaluation_dataset(as_samples(paths), 64, protocol, workers=1)
    for index, path in enumerate(paths):
        annotation = read_mat_labels(path + ".mat")
        box = protocol.face_box(annotation)
        direct = protocol.evaluation_crop(read_image(path + ".jpg"), box, 64)
        image, angles = dataset[index]
        assert np.array_equal(image.numpy(), direct)
        assert angles.tolist() == pytest.approx(annotation.angles_deg, abs=1e-4)
    if name == "visible":  # the visible crop frames the visible landmarks' box
        assert box == loose_box(annotation.visible_points_xy - 1.0, 0.0, "eval")


def test_parallel_decoding_equals_serial(tmp_path, monkeypatch):
    stems = write_tiny_dataset(tmp_path, 70)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "serial"))
    spec = StoreSpec(32, HOPENET, "train")
    serial = prepare_crops(as_samples(stems), spec, workers=1)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "parallel"))
    parallel = prepare_crops(as_samples(stems), spec, workers=2)
    assert serial.images.filename != parallel.images.filename  # two builds
    assert np.array_equal(serial.images, parallel.images)
    assert np.array_equal(serial.angles_deg, parallel.angles_deg)
