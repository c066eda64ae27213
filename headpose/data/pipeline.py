"""The input pipeline: sample lists, the prepared-crop cache and the torch datasets built on it.

Decoding a 450x450 JPEG and a .mat file costs far more than a training step on a small crop, so
every sample is decoded **once** (in parallel, :func:`prepare_crops`) into a small uint8 image of
the widest region any crop can need, plus its face box and angles (:class:`PreparedCrops`).
:class:`PoseDataset` then cuts the actual crop out of that small image per item:

* training (``augment=True``): HopeNet's random loose crop (``k`` in [0.2, 0.4]), a horizontal
  flip with probability 1/2 (negating yaw and roll) and a light blur with probability 0.05;
* evaluation (``augment=False``): the fixed AFLW2000 crop (``k = 0.2``, eval margins).

Each item's randomness comes from its own generator seeded by (seed, epoch, index), so results do
not depend on the number of loader workers and an interrupted run can be replayed exactly. Images
leave the dataset ImageNet-normalised (:func:`preprocess`), which evaluation and prediction reuse.

Sample lists hold one stem per line (``NAME`` for ``NAME.jpg`` + ``NAME.mat``), as written by the
filelists and augment stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from headpose.data.crop import EVAL_K, TRAIN_K_RANGE, Box, crop_resized, landmark_box, loosen_box
from headpose.geometry import flip_angles
from headpose.io.formats import read_sample
from headpose.io.parallel import map_with_progress
from headpose.models.registry import IMAGENET_MEAN, IMAGENET_STD

FLIP_PROBABILITY = 0.5
BLUR_PROBABILITY = 0.05
# The cached region is this much larger than image_size, so even the tightest crop it holds
# (k = 0.2 train margins: 69% of the cached width) keeps about image_size pixels.
CACHE_SCALE = 1.5


def imagenet_normalization() -> dict[str, list[float]]:
    """The normalisation every model input gets (stored in checkpoints beside the weights)."""
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def preprocess(crop_rgb: np.ndarray) -> torch.Tensor:
    """An RGB uint8 crop (H, W, 3) as a float (3, H, W) tensor with ImageNet normalisation."""
    image = torch.from_numpy(np.ascontiguousarray(crop_rgb)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image - mean) / std


def cache_region(face_box: Box) -> Box:
    """The widest region any crop of this face can need: the union of the loosest train crop
    (k = 0.4) and the evaluation crop (k = 0.2)."""
    train = loosen_box(face_box, TRAIN_K_RANGE[1], "train")
    evaluation = loosen_box(face_box, EVAL_K, "eval")
    return (
        min(train[0], evaluation[0]),
        min(train[1], evaluation[1]),
        max(train[2], evaluation[2]),
        max(train[3], evaluation[3]),
    )


@dataclass
class PreparedCrops:
    """Decoded samples: small square crops of each face's cache region, with labels.

    ``face_boxes`` are the landmark boxes in the pixel coordinates of ``images``.
    """

    stems: list[str]
    images: np.ndarray  # (N, S, S, 3) uint8
    face_boxes: np.ndarray  # (N, 4) float32: x_min, y_min, x_max, y_max
    angles_deg: np.ndarray  # (N, 3) float32: yaw, pitch, roll

    def __len__(self) -> int:
        return len(self.stems)


def cache_side(image_size: int) -> int:
    """Side in pixels of the cached crops for a model input of ``image_size``."""
    return math.ceil(image_size * CACHE_SCALE)


def _prepare_one(task: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one sample into (cached crop, face box in crop pixels, angles)."""
    stem, side = task
    image, annotation = read_sample(stem)  # validated: bounded image, landmarks and box
    face_box = landmark_box(annotation.landmarks_xy - 1.0)  # 1-based -> pixel coordinates
    region = cache_region(face_box)
    crop = crop_resized(image, region, side)
    # crop_resized rounds the region outwards to whole pixels; map the face box accordingly.
    left, top = math.floor(region[0]), math.floor(region[1])
    scale_x = side / (math.ceil(region[2]) - left)
    scale_y = side / (math.ceil(region[3]) - top)
    box_in_crop = np.array(
        [
            (face_box[0] - left) * scale_x,
            (face_box[1] - top) * scale_y,
            (face_box[2] - left) * scale_x,
            (face_box[3] - top) * scale_y,
        ],
        dtype=np.float32,
    )
    return crop, box_in_crop, np.asarray(annotation.angles_deg, dtype=np.float32)


def prepare_crops(
    stems: list[str], image_size: int, workers: int = 0, description: str = "decode"
) -> PreparedCrops:
    """Decode every sample once into a :class:`PreparedCrops` cache (parallel, with a tqdm bar).

    ``stems`` are sample paths without extension; ``workers`` processes decode them (0 = one per
    CPU core). A missing or corrupt sample raises a HeadposeError naming its file.
    """
    side = cache_side(image_size)
    results = map_with_progress(
        _prepare_one, [(stem, side) for stem in stems], workers, description
    )
    images = np.empty((len(stems), side, side, 3), dtype=np.uint8)
    face_boxes = np.empty((len(stems), 4), dtype=np.float32)
    angles = np.empty((len(stems), 3), dtype=np.float32)
    for index, (crop, face_box, sample_angles) in enumerate(results):
        images[index], face_boxes[index], angles[index] = crop, face_box, sample_angles
    return PreparedCrops(list(stems), images, face_boxes, angles)


class PoseDataset(Dataset):
    """Items ``(image (3, S, S) float, angles_deg (3,) float: yaw, pitch, roll)`` of a cache.

    With ``augment`` each item is a random loose crop, possibly flipped and blurred, drawn from a
    generator seeded by ``(seed, epoch, index)``: call :meth:`set_epoch` before each epoch (before
    the DataLoader's iterator is created, so worker processes see it). Without ``augment`` every
    item is the fixed evaluation crop.
    """

    def __init__(self, crops: PreparedCrops, image_size: int, augment: bool, seed: int = 0):
        self.crops = crops
        self.image_size = image_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.crops.images[index]
        face_box = tuple(float(v) for v in self.crops.face_boxes[index])
        angles = self.crops.angles_deg[index]
        if not self.augment:
            crop = crop_resized(image, loosen_box(face_box, EVAL_K, "eval"), self.image_size)
            return preprocess(crop), torch.from_numpy(angles.copy())
        rng = np.random.default_rng((self.seed, self.epoch, index))
        k = rng.uniform(*TRAIN_K_RANGE)
        crop = crop_resized(image, loosen_box(face_box, k, "train"), self.image_size)
        if rng.random() < FLIP_PROBABILITY:
            crop = crop[:, ::-1]
            angles = flip_angles(angles)
        if rng.random() < BLUR_PROBABILITY:
            crop = cv2.blur(np.ascontiguousarray(crop), (3, 3))
        return preprocess(crop), torch.from_numpy(angles.copy())


def evaluation_dataset(stems: list[str], image_size: int, workers: int = 0) -> PoseDataset:
    """The dataset the validation and the evaluate stage score a model on.

    Decodes ``stems`` (sample paths without extension, e.g. from :func:`read_list`) once and
    serves each as the fixed AFLW2000 crop (k = 0.2, eval margins) at ``image_size``, normalised.
    Items are ``(image, angles_deg)``; ``dataset.crops.stems[i]`` names item ``i``.
    """
    crops = prepare_crops(stems, image_size, workers, description="decode eval")
    return PoseDataset(crops, image_size, augment=False)
