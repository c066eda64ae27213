"""Loose face crops on the real AFLW2000 and 300W_LP annotations."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_helpers import loose_box

from headpose.data.crop import crop_resized, landmark_box, loosen_box
from headpose.errors import HeadposeError
from headpose.io.formats import find_sample_stems, read_mat


def _raw_landmarks(mat_path) -> np.ndarray:
    return np.asarray(read_mat(mat_path)["pt2d"], dtype=np.float64).T


def test_box_drops_invisible_landmarks_and_contains_the_visible(aflw2000_dir):
    stems, _ = find_sample_stems(aflw2000_dir, recursive=False)
    checked_with_invisible = 0
    for stem in stems[:200]:
        points = _raw_landmarks(aflw2000_dir / f"{stem}.mat")
        visible = points[np.all(points >= 0, axis=1)]
        x_min, y_min, x_max, y_max = landmark_box(points)
        assert (x_min, y_min, x_max, y_max) == (
            visible[:, 0].min(),
            visible[:, 1].min(),
            visible[:, 0].max(),
            visible[:, 1].max(),
        )
        assert x_min >= 0 and y_min >= 0  # no (-1, 452) placeholder pulled the box out
        if len(visible) < len(points):
            checked_with_invisible += 1
        for mode, k in (("eval", 0.2), ("train", 0.2), ("train", 0.4)):
            loose = loose_box(points, k, mode)
            assert loose[0] <= visible[:, 0].min() and loose[2] >= visible[:, 0].max()
            assert loose[1] <= visible[:, 1].min() and loose[3] >= visible[:, 1].max()
    assert checked_with_invisible > 50  # the quirk really is exercised


def test_margins_follow_the_original_recipe():
    box = (100.0, 200.0, 200.0, 400.0)  # width 100, height 200
    assert loosen_box(box, 0.2, "eval") == pytest.approx((60.0, 120.0, 240.0, 424.0))
    assert loosen_box(box, 0.4, "train") == pytest.approx((76.0, 40.0, 224.0, 448.0))


def test_crop_pads_outside_the_image_with_black(w300lp_sample_dir):
    stems, _ = find_sample_stems(w300lp_sample_dir, recursive=True)
    points = _raw_landmarks(w300lp_sample_dir / f"{stems[0]}.mat")
    image = np.full((450, 450, 3), 200, dtype=np.uint8)
    inside = crop_resized(image, loose_box(points, 0.2, "eval"), 64)
    assert inside.shape == (64, 64, 3)
    half_out = crop_resized(image, (-50.0, 0.0, 50.0, 100.0), 20)
    assert (half_out[:, :9] == 0).all() and (half_out[:, 11:] == 200).all()
    assert (crop_resized(image, (500.0, 500.0, 520.0, 520.0), 8) == 0).all()


def test_bad_input_is_rejected():
    with pytest.raises(HeadposeError, match="visible landmarks"):
        landmark_box(np.array([[-1.0, 452.0], [10.0, 10.0]]))
    with pytest.raises(HeadposeError, match="crop mode"):
        loosen_box((0, 0, 1, 1), 0.2, "test")
