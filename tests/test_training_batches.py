"""Training batches: gathered whole from the store, cut, scaled, flipped and blurred on the
device. These run the device code on the CPU, the same code the CUDA path runs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers import as_samples
from PIL import Image, ImageFilter
from protocol_fixtures import HOPENET, VISIBLE
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler
from training_fixtures import write_tiny_dataset

from headpose.crops.pipeline import training_dataset
from headpose.crops.protocols import CropProtocol, get_protocol
from headpose.crops.store.spec import PreparedCrops, StoreSpec
from headpose.crops.training_batches import (
    RegionBatch,
    TrainingRegions,
    _blur,
    augmented_crops,
    in_region,
    training_images,
)
from headpose.models.registry import IMAGENET

CPU = torch.device("cpu")


def _one_region_batch(region: np.ndarray, rectangles, flipped=None, blurred=None) -> RegionBatch:
    count = len(rectangles)
    return RegionBatch(
        regions=torch.from_numpy(np.repeat(region[None], count, axis=0)),
        rectangles=torch.tensor(rectangles, dtype=torch.float64),
        flipped=torch.tensor(flipped or [False] * count),
        blurred=torch.tensor(blurred or [False] * count),
        angles_deg=torch.zeros(count, 3),
    )


def test_crops_sample_the_rectangle_at_pixel_centres():
    """On a linear ramp bilinear sampling is exact: pixel (row v, column u) of a crop of the
    rectangle (x0, y0)-(x1, y1) holds the ramp at x0 + (u + 0.5) (x1 - x0) / S (less the half
    pixel from continuous to index coordinates), and a flipped crop is the mirror image."""
    side, size = 48, 16
    rows, columns = np.mgrid[0:side, 0:side]
    ramp = 2 * columns + 3 * rows  # at most 235
    region = np.stack([ramp, ramp, 255 - ramp], -1).astype(np.uint8)
    rectangles = [(4.0, 6.5, 36.0, 30.5), (10.25, 3.0, 20.25, 44.0)]
    batch = _one_region_batch(region, rectangles + rectangles, flipped=[False, False, True, True])
    crops = augmented_crops(batch, size, HOPENET, CPU).numpy()
    assert crops.shape == (4, 3, size, size) and crops.dtype == np.float32
    centres = (np.arange(size) + 0.5) / size
    for index, (x0, y0, x1, y1) in enumerate(rectangles):
        xs = x0 + centres * (x1 - x0) - 0.5
        ys = y0 + centres * (y1 - y0) - 0.5
        expected = 2 * xs[None, :] + 3 * ys[:, None]
        np.testing.assert_allclose(crops[index, 0], expected, atol=2e-3)
        np.testing.assert_allclose(crops[index, 2], 255 - expected, atol=2e-3)
        np.testing.assert_allclose(crops[index + 2], crops[index][:, :, ::-1], atol=2e-3)


def test_crops_equal_the_per_item_warp_they_replace():
    """The per-item OpenCV warp the loader used before (bilinear, black outside): same pixels up
    to OpenCV's fixed-point weights and its rounding to uint8, also across the region's edge."""
    rng = np.random.default_rng(0)
    side, size = 96, 64
    region = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (7, 7), 2)
    rectangles = [(5.3, 7.9, 80.1, 82.7), (-6.0, 20.0, 70.0, 96.0), (30.0, 30.0, 101.5, 101.5)]
    crops = augmented_crops(_one_region_batch(region, rectangles), size, HOPENET, CPU)
    for crop, (x0, y0, x1, y1) in zip(crops.numpy(), rectangles, strict=True):
        step_x, step_y = (x1 - x0) / size, (y1 - y0) / size
        warp = np.array([[step_x, 0, x0 + step_x / 2 - 0.5], [0, step_y, y0 + step_y / 2 - 0.5]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        reference = cv2.warpAffine(region, warp, (size, size), flags=flags, borderValue=0)
        difference = np.abs(crop.transpose(1, 2, 0) - reference)
        assert difference.mean() < 0.6 and difference.max() <= 3.0


@pytest.mark.parametrize("protocol", ["hopenet", "visible"])
def test_blur_is_the_protocols_kernel(protocol):
    """hopenet: PIL's ImageFilter.BLUR (what the original trains with); visible: OpenCV's 3x3 box
    blur. Ours stays in float; theirs round to uint8."""
    image = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    images = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    ours = _blur(images, get_protocol(protocol))
    ours = ours[0].permute(1, 2, 0).numpy()
    if protocol == "hopenet":
        reference = np.asarray(Image.fromarray(image).filter(ImageFilter.BLUR))
    else:
        reference = cv2.blur(image, (3, 3))
    assert np.abs(ours - reference).max() <= 0.5 + 1e-3


def _half_bright_crops(protocol: CropProtocol = HOPENET, count: int = 1) -> PreparedCrops:
    """Face boxes (116, 116)-(132, 132) whose region (100, 100)-(148, 148) is stored at 48 px,
    its left half bright."""
    image = np.zeros((count, 48, 48, 3), dtype=np.uint8)
    image[:, :, :24] = 255  # left half bright
    return PreparedCrops(
        samples=as_samples(f"x{index}" for index in range(count)),
        images=image,
        face_boxes=np.tile([[116.0, 116.0, 132.0, 132.0]], (count, 1)),
        regions=np.tile([[100.0, 100.0, 148.0, 148.0]], (count, 1)),
        angles_deg=np.tile(np.array([[30.0, 10.0, -20.0]], dtype=np.float32), (count, 1)),
        spec=StoreSpec(32, protocol, "train"),
    )


def test_flip_negates_yaw_and_roll_and_mirrors_the_image():
    dataset = TrainingRegions(_half_bright_crops())
    seen = set()
    for epoch in range(20):
        dataset.set_epoch(epoch)
        batch = dataset[[0]]
        image = augmented_crops(batch, 32, HOPENET, CPU)[0]
        left, right = image[..., :8].mean(), image[..., -8:].mean()
        flipped = bool(batch.flipped[0])
        expected = [-30.0, 10.0, 20.0] if flipped else [30.0, 10.0, -20.0]
        assert batch.angles_deg[0].tolist() == expected
        assert (right > left) if flipped else (left > right)
        seen.add(flipped)
    assert seen == {True, False}


@pytest.mark.parametrize("protocol", ["hopenet", "visible"])
def test_draws_are_seeded_by_epoch_and_index_not_by_the_batch(protocol):
    dataset = TrainingRegions(_half_bright_crops(get_protocol(protocol), count=6), seed=3)
    dataset.set_epoch(5)
    whole = dataset[[0, 1, 2, 3, 4, 5]]
    for index in (0, 3, 5):
        alone = dataset[[index]]
        for field in RegionBatch._fields:
            if getattr(whole, field) is None:  # framing augmentation's fields, off here
                assert getattr(alone, field) is None, field
                continue
            assert torch.equal(getattr(alone, field)[0], getattr(whole, field)[index]), field
    assert torch.equal(dataset[[2, 0]].rectangles[1], whole.rectangles[0])
    draws = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        draws.add(dataset[[0]].rectangles.numpy().tobytes())
    assert len(draws) > 1  # the crop changes from epoch to epoch
    assert len(set(whole.rectangles[:, 0].tolist())) > 1  # and from item to item


def test_rectangles_are_given_in_the_cached_regions_pixels():
    assert in_region((110.0, 120.0, 130.0, 148.0), (100.0, 100.0, 148.0, 148.0), 96) == (
        20.0,
        40.0,
        60.0,
        96.0,
    )


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> list:
    return as_samples(write_tiny_dataset(tmp_path_factory.mktemp("samples"), 12))


def test_loader_workers_give_the_batches_of_the_training_process(tiny_store):
    """Batches gathered by persistent worker processes equal those gathered in the training
    process, epoch after epoch (the epoch lives in shared memory)."""
    dataset = training_dataset(tiny_store, 32, HOPENET, seed=1, workers=1)
    batches = BatchSampler(SequentialSampler(dataset), 5, drop_last=True)
    loader = DataLoader(
        dataset, batch_size=None, sampler=batches, num_workers=1, persistent_workers=True
    )
    for epoch in (1, 2, 3):
        dataset.set_epoch(epoch)
        loaded = list(loader)
        assert len(loaded) == 2
        for indices, batch in zip(batches, loaded, strict=True):
            direct = dataset[indices]
            for field in RegionBatch._fields:
                if getattr(direct, field) is None:  # framing augmentation's fields, off here
                    assert getattr(batch, field) is None, field
                    continue
                assert torch.equal(getattr(batch, field), getattr(direct, field)), field
        assert loaded[0].regions.dtype == torch.uint8 and loaded[0].regions.shape[0] == 5


def test_model_input_is_normalised_and_in_the_asked_memory_format(tiny_store):
    dataset = training_dataset(tiny_store, 32, VISIBLE, seed=2, workers=1)
    batch = dataset[[0, 1, 2, 3]]
    crops = augmented_crops(batch, 32, VISIBLE, CPU)
    images, angles = training_images(batch, 32, VISIBLE, CPU, IMAGENET, channels_last=True)
    assert images.shape == (4, 3, 32, 32) and angles.shape == (4, 3)
    assert images.is_contiguous(memory_format=torch.channels_last)
    mean = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    torch.testing.assert_close(images, (crops / 255.0 - mean) / std)
    plain, _ = training_images(batch, 32, VISIBLE, CPU, IMAGENET)
    assert plain.is_contiguous() and torch.equal(plain, images.contiguous())
