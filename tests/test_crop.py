"""The crop protocols on the real AFLW2000 and 300W_LP annotations.

The reference crops here are written from the published protocol's formulas (see
``docs/conventions.md``, "Face crops") with PIL and torchvision, independently of the library.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
import torch
from geometry_helpers import loose_box
from helpers import as_samples
from PIL import Image
from protocol_fixtures import HOPENET, VISIBLE
from torchvision import transforms

from headpose.crops.crop import cut, landmark_box, resize_square, shrunk_cut
from headpose.crops.pipeline import evaluation_dataset
from headpose.crops.protocols import TrainingDraw, get_protocol
from headpose.crops.training_batches import RegionBatch, augmented_crops, in_region
from headpose.datasets.filelists import scan_dataset, usable_samples
from headpose.datasets.mat import find_sample_stems, read_mat, read_mat_labels, write_mat
from headpose.errors import HeadposeError


def _raw_landmarks(mat_path) -> np.ndarray:
    return np.asarray(read_mat(mat_path)["pt2d"], dtype=np.float64).T


def _reference_box(stem: str, k: float, margins: tuple[float, float, float, float]) -> tuple:
    """The original code's box: min/max of every stored pt2d point, margins in running order."""
    pt2d = scipy.io.loadmat(stem + ".mat")["pt2d"]
    x_min, x_max = min(pt2d[0, :]), max(pt2d[0, :])
    y_min, y_max = min(pt2d[1, :]), max(pt2d[1, :])
    left, top, right, bottom = margins
    x_min -= left * k * abs(x_max - x_min)
    y_min -= top * k * abs(y_max - y_min)
    x_max += right * k * abs(x_max - x_min)
    y_max += bottom * k * abs(y_max - y_min)
    return int(x_min), int(y_min), int(x_max), int(y_max)


def _reference_test_crop(stem: str, size: int) -> np.ndarray:
    """What the original test code feeds its network (before ToTensor/Normalize)."""
    image = Image.open(stem + ".jpg").convert("RGB")
    image = image.crop(_reference_box(stem, 0.2, (2.0, 2.0, 2.0, 0.6)))
    transform = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size)])
    return np.asarray(transform(image))


def _usable_aflw2000(aflw2000_dir, count: int) -> list[str]:
    stems, skipped, _ = usable_samples(scan_dataset(aflw2000_dir, "test", "aflw2000"), 99)
    assert len(stems) == 1969 and len(skipped) == 31  # the published protocol's count
    return [sample.entry for sample in stems[:count]]


@pytest.mark.parametrize("size", [224, 64])
def test_hopenet_evaluation_crops_equal_the_original_test_code(aflw2000_dir, size):
    stems = _usable_aflw2000(aflw2000_dir, 200)
    dataset = evaluation_dataset(as_samples(stems), size, HOPENET, workers=1)
    with_placeholders = 0
    for index, stem in enumerate(stems):
        image, _ = dataset[index]
        reference = _reference_test_crop(stem, size)
        assert image.numpy().shape == reference.shape == (size, size, 3)
        assert np.array_equal(image.numpy(), reference), stem  # identical pixels
        with_placeholders += bool((_raw_landmarks(stem + ".mat") < 0).any())
    assert with_placeholders > 100  # the negative placeholders really are in these boxes


def test_hopenet_face_box_keeps_every_stored_point(aflw2000_dir):
    stems = _usable_aflw2000(aflw2000_dir, 200)
    for stem in stems:
        points = _raw_landmarks(stem + ".mat")
        box = HOPENET.face_box(read_mat_labels(stem + ".mat"))
        assert box == (*points.min(axis=0), *points.max(axis=0))  # no shift, nothing dropped


def test_hopenet_training_box_for_fixed_k_is_the_originals(aflw2000_dir, w300lp_sample_dir):
    stems = _usable_aflw2000(aflw2000_dir, 200)
    train_stems, _ = find_sample_stems(w300lp_sample_dir, recursive=True)
    stems += [str(w300lp_sample_dir / stem) for stem in train_stems]
    for stem in stems:
        box = HOPENET.face_box(read_mat_labels(stem + ".mat"))
        for k in (0.2, 0.3, 0.4):
            ours = HOPENET.pixel_box(HOPENET.loosen_box(box, k, "train"))
            assert ours == _reference_box(stem, k, (0.6, 2.0, 0.6, 0.6)), (stem, k)


def test_hopenet_training_crop_is_the_scaled_box_cropped_at_the_drawn_offset(w300lp_sample_dir):
    """The crop cut on the device from the cached region shows what Scale(240/224 S) + a crop at
    the drawn offset of the original's int() box shows (other resampler: close, not equal)."""
    train_stems, _ = find_sample_stems(w300lp_sample_dir, recursive=True)
    stem = str(w300lp_sample_dir / train_stems[0])
    annotation = read_mat_labels(stem + ".mat")
    full = np.asarray(Image.open(stem + ".jpg").convert("RGB"))
    box = HOPENET.face_box(annotation)
    region = HOPENET.training_region(box)
    cached = np.asarray(Image.fromarray(cut(full, region)).resize((336, 336), Image.BILINEAR))
    size = 224
    for k, offset in ((0.2, (0.0, 0.0)), (0.3, (0.5, 0.9)), (0.4, (0.99, 0.3))):
        bounds = _reference_box(stem, k, (0.6, 2.0, 0.6, 0.6))
        scaled = transforms.Resize(240)(Image.open(stem + ".jpg").convert("RGB").crop(bounds))
        room_x, room_y = scaled.width - size, scaled.height - size
        column, row = int(offset[0] * (room_x + 1)), int(offset[1] * (room_y + 1))
        reference = np.asarray(scaled.crop((column, row, column + size, row + size)))
        rectangle = HOPENET.training_rectangle(box, TrainingDraw(k, offset), size)
        batch = RegionBatch(
            regions=torch.from_numpy(cached[None].copy()),
            rectangles=torch.tensor([in_region(rectangle, tuple(map(float, region)), 336)]),
            flipped=torch.tensor([False]),
            blurred=torch.tensor([False]),
            angles_deg=torch.zeros(1, 3),
        )
        ours = augmented_crops(batch, size, HOPENET, torch.device("cpu"))[0].permute(1, 2, 0)
        difference = np.abs(ours.numpy() - reference).mean()
        assert difference < 6, (k, offset, difference)
        # The rectangle is the crop's exact place in the original box.
        width = bounds[2] - bounds[0]
        assert rectangle[0] == pytest.approx(bounds[0] + column * width / scaled.width)


def test_visible_box_drops_invisible_landmarks_and_contains_the_visible(aflw2000_dir):
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


def test_margins_of_each_protocol():
    box = (100.0, 200.0, 200.0, 400.0)  # width 100, height 200
    # visible: all four edges from the original box
    assert VISIBLE.loosen_box(box, 0.2, "eval") == pytest.approx((60.0, 120.0, 240.0, 424.0))
    assert VISIBLE.loosen_box(box, 0.4, "train") == pytest.approx((76.0, 40.0, 224.0, 448.0))
    # hopenet: right and bottom measured on the already moved left and top edges
    assert HOPENET.loosen_box(box, 0.2, "eval") == pytest.approx((60.0, 120.0, 256.0, 433.6))
    assert HOPENET.loosen_box(box, 0.4, "train") == pytest.approx((76.0, 40.0, 229.76, 486.4))
    # int() truncates towards zero, as PIL's crop of the original; visible rounds outwards
    assert HOPENET.pixel_box((-3.7, 2.5, 10.2, 11.9)) == (-3, 2, 10, 11)
    assert VISIBLE.pixel_box((-3.7, 2.5, 10.2, 11.9)) == (-4, 2, 11, 12)


def test_crops_pad_outside_the_image_with_black():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    half_out = cut(image, (-50, 0, 50, 100))
    assert (half_out[:, :50] == 0).all() and (half_out[:, 50:] == 200).all()
    assert (cut(image, (500, 500, 520, 520)) == 0).all()
    face = (40.0, 40.0, 60.0, 60.0)
    for protocol in (HOPENET, VISIBLE):
        assert protocol.evaluation_crop(image, face, 32).shape == (32, 32, 3)


def test_shrunk_cut_resamples_only_the_image_part_of_a_large_canvas(aflw2000_dir):
    """A framing context: a canvas up to several times the image, black outside it. The fast
    path places the image block's edges to the nearest source pixel, so its cells may sit up to
    half a source pixel off the whole canvas's: a cell changes by at most that share of the
    grey range, black cells stay black, and the average change is small."""
    rng = np.random.default_rng(0)
    images = sorted(aflw2000_dir.glob("*.jpg"))[:20]
    mean_differences = []
    for path in images:
        image = np.asarray(Image.open(path).convert("RGB"))
        white = np.full_like(image, 255)
        for _ in range(5):
            side = int(rng.integers(200, 2500))
            left, top = (int(v) for v in rng.integers(-side + 10, 440, size=2))
            bounds = (left, top, left + side, top + side + int(rng.integers(-5, 6)))
            exact = resize_square(cut(image, bounds), 64).astype(int)
            fast = shrunk_cut(image, bounds, 64)
            assert fast.shape == exact.shape and fast.dtype == np.uint8
            outside = resize_square(cut(white, bounds), 64).max(axis=2) == 0
            assert (fast[outside & ~_grown(~outside)] == 0).all()
            cell = min(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 64
            assert np.abs(fast - exact).max() <= 255 * 0.5 / cell + 2
            mean_differences.append(np.abs(fast - exact).mean())
    assert np.mean(mean_differences) < 0.2
    # a canvas inside the image, one smaller than the output, or one beside the image: exact
    image = np.asarray(Image.open(images[0]).convert("RGB"))
    for bounds in [(10, 20, 400, 410), (100, 100, 140, 150), (-30, -30, 30, 30)]:
        assert np.array_equal(shrunk_cut(image, bounds, 64), resize_square(cut(image, bounds), 64))
    assert (shrunk_cut(image, (500, 0, 900, 400), 64) == 0).all()


def _grown(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one cell in each of the eight directions."""
    grown = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return grown


def test_bad_input_is_rejected(tmp_path):
    with pytest.raises(HeadposeError, match="visible landmarks"):
        landmark_box(np.array([[-1.0, 452.0], [10.0, 10.0]]))
    with pytest.raises(HeadposeError, match="crop mode"):
        HOPENET.loosen_box((0, 0, 1, 1), 0.2, "test")
    with pytest.raises(HeadposeError, match="unknown crop protocol .tight."):
        get_protocol("tight")
    pose = np.zeros((1, 7))
    good = np.array([[10.0, 10.0], [50.0, 60.0], [-1.0, 452.0]])
    write_mat(tmp_path / "good.mat", {"Pose_Para": pose, "pt2d": good.T})
    annotation = read_mat_labels(tmp_path / "good.mat", (450, 450))
    assert HOPENET.face_box(annotation) == (-1.0, 10.0, 50.0, 452.0)
    assert VISIBLE.face_box(annotation) == (9.0, 9.0, 49.0, 59.0)
    # the published box frames every point: a placeholder must be finite and near the image
    far = np.array([[10.0, 10.0], [50.0, 60.0], [-1e9, 452.0]])
    write_mat(tmp_path / "far.mat", {"Pose_Para": pose, "pt2d": far.T})
    with pytest.raises(HeadposeError, match=r"far\.mat: pt2d point \(-1e\+09, 452\) lies far"):
        read_mat_labels(tmp_path / "far.mat", (450, 450))
    nan = np.array([[10.0, 10.0], [50.0, 60.0], [math.nan, 452.0]])
    write_mat(tmp_path / "nan.mat", {"Pose_Para": pose, "pt2d": nan.T})
    with pytest.raises(HeadposeError, match=r"nan\.mat: pt2d holds values that are not finite"):
        read_mat_labels(tmp_path / "nan.mat")
