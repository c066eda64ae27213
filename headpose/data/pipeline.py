"""The torch datasets on the crop store, and the one normalisation of model inputs.

Every sample is decoded once into the crop store (:mod:`headpose.data.store`), under the crop
protocol the params choose (:mod:`headpose.data.crop`). :class:`PoseDataset` serves it:

* training (a "train" store): per item the protocol's random loose crop (``k`` in [0.2, 0.4],
  and under ``hopenet`` the random crop of the scaled box), resampled from the stored region, a
  horizontal flip with probability 1/2 (negating yaw and roll) and the protocol's blur with
  probability 0.05;
* evaluation (an "eval" store): the stored final crop of the protocol (k = 0.2, eval margins).

Each item's randomness comes from its own generator seeded by (seed, epoch, index), so results do
not depend on the number of loader workers and an interrupted run can be replayed exactly. Items
are uint8 ``(S, S, 3)`` RGB crops: batches travel as bytes (a quarter of float32) and
:func:`model_input` normalises them on the device the model runs on, by the model's
normalisation (its checkpoint's ``mean`` and ``std``, from its backbone's registry entry);
:func:`preprocess` is the same for one crop (prediction).

Sample lists hold one stem per line (``NAME`` for ``NAME.jpg`` + ``NAME.mat``), as written by the
filelists and augment stages.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from headpose.data.crop import blur, draw_training_crop, resample, training_rectangle
from headpose.data.store import PreparedCrops, StoreSpec, prepare_crops
from headpose.geometry import flip_angles
from headpose.models.registry import Normalization

FLIP_PROBABILITY = 0.5
BLUR_PROBABILITY = 0.05


def model_input(
    images: torch.Tensor, device: torch.device, normalization: Normalization
) -> torch.Tensor:
    """A uint8 batch of RGB crops ``(N, S, S, 3)`` as the model's float ``(N, 3, S, S)`` input on
    ``device``: moved as bytes, then scaled to [0, 1] and normalised there by ``normalization``
    (the model's: its checkpoint's mean and std)."""
    images = images.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor(normalization.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(normalization.std, device=device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def preprocess(crop_rgb: np.ndarray, normalization: Normalization) -> torch.Tensor:
    """An RGB uint8 crop (H, W, 3) as a float (3, H, W) model input (:func:`model_input`)."""
    batch = torch.from_numpy(np.ascontiguousarray(crop_rgb))[None]
    return model_input(batch, torch.device("cpu"), normalization)[0]


class PoseDataset(Dataset):
    """Items ``(image (S, S, 3) uint8 RGB, angles_deg (3,) float: yaw, pitch, roll)`` of prepared
    crops (normalise batches with :func:`model_input`).

    From a training store each item is a random crop of the protocol, possibly flipped and
    blurred, drawn from a generator seeded by ``(seed, epoch, index)``: call :meth:`set_epoch`
    before each epoch's DataLoader iterator is created. The epoch lives in shared memory, so
    persistent worker processes see it too. From an evaluation store every item is the stored
    final crop.
    """

    def __init__(self, crops: PreparedCrops, seed: int = 0):
        self.crops = crops
        self.image_size = crops.spec.image_size
        self.protocol = crops.spec.protocol
        self.augment = crops.spec.purpose == "train"
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.crops.images[index]
        angles = self.crops.angles_deg[index]
        if not self.augment:
            return torch.from_numpy(np.array(image)), torch.from_numpy(angles.copy())
        rng = np.random.default_rng((self.seed, self.epoch, index))
        draw = draw_training_crop(rng, self.protocol)
        face_box = tuple(float(v) for v in self.crops.face_boxes[index])
        region = tuple(float(v) for v in self.crops.regions[index])
        rectangle = training_rectangle(face_box, draw, self.image_size, self.protocol)
        crop = resample(image, region, rectangle, self.image_size)
        if rng.random() < FLIP_PROBABILITY:
            crop = crop[:, ::-1]
            angles = flip_angles(angles)
        if rng.random() < BLUR_PROBABILITY:
            crop = blur(crop, self.protocol)
        return torch.from_numpy(np.ascontiguousarray(crop)), torch.from_numpy(angles.copy())


def training_dataset(
    stems: list[str],
    image_size: int,
    protocol: str,
    seed: int = 0,
    workers: int = 0,
    description: str = "training crops",
) -> PoseDataset:
    """The random training crops of ``stems`` under crop ``protocol`` at ``image_size``, from
    their training store (built on first use), with item randomness from ``seed``."""
    spec = StoreSpec(image_size, protocol, "train")
    return PoseDataset(prepare_crops(stems, spec, workers, description), seed)


def evaluation_dataset(
    stems: list[str], image_size: int, protocol: str, workers: int = 0
) -> PoseDataset:
    """The dataset the validation and the evaluate stage score a model on.

    Reads ``stems`` (sample paths without extension, e.g. from :func:`read_list`) from their
    evaluation store (built on first use): each the fixed evaluation crop of ``protocol`` (k = 0.2,
    eval margins) at ``image_size``. Items are ``(image uint8, angles_deg)``;
    ``dataset.crops.stems[i]`` names item ``i``.
    """
    spec = StoreSpec(image_size, protocol, "eval")
    return PoseDataset(prepare_crops(stems, spec, workers, "evaluation crops"))
