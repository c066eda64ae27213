"""The torch datasets on the crop store, and the one normalisation of model inputs.

Every sample is decoded once into the crop store (:mod:`headpose.crops.store`), under the crop
protocol the params choose (a :class:`~headpose.crops.protocols.CropProtocol`), and served from it:

* training (a "train" store): :func:`training_dataset`, whole batches of cached regions whose
  random crop, flip and blur are made on the model's device
  (:mod:`headpose.crops.training_batches`);
* evaluation (an "eval" store): :class:`PoseDataset`, the stored final crop of the protocol
  (k = 0.2, eval margins), item by item.

Items are uint8 ``(S, S, 3)`` RGB crops: batches travel as bytes (a quarter of float32) and
:func:`model_input` normalises them on the device the model runs on, by the model's
normalisation (its checkpoint's ``mean`` and ``std``, from its backbone's registry entry);
:func:`preprocess` is the same for one crop (prediction).

The samples come as :class:`~headpose.datasets.registry.Sample` values (an entry with its format,
resolved where the list was read: :func:`headpose.datasets.registry.read_samples`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from headpose.crops.framing import NO_FRAMING, FramingAugmentation
from headpose.crops.protocols import CropProtocol
from headpose.crops.store import prepare_crops
from headpose.crops.store.spec import PreparedCrops, StoreSpec
from headpose.crops.training_batches import TrainingRegions, normalize
from headpose.datasets.registry import Sample
from headpose.models.registry import Normalization


def model_input(
    images: torch.Tensor, device: torch.device, normalization: Normalization
) -> torch.Tensor:
    """A uint8 batch of RGB crops ``(N, S, S, 3)`` as the model's float ``(N, 3, S, S)`` input on
    ``device``: moved as bytes, then scaled to [0, 1] and normalised there by ``normalization``
    (the model's: its checkpoint's mean and std)."""
    images = images.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return normalize(images.float(), normalization)


def preprocess(crop_rgb: np.ndarray, normalization: Normalization) -> torch.Tensor:
    """An RGB uint8 crop (H, W, 3) as a float (3, H, W) model input (:func:`model_input`)."""
    batch = torch.from_numpy(np.ascontiguousarray(crop_rgb))[None]
    return model_input(batch, torch.device("cpu"), normalization)[0]


class PoseDataset(Dataset):
    """Items ``(image (S, S, 3) uint8 RGB, angles_deg (3,) float: yaw, pitch, roll)``: the final
    crops of an evaluation store (normalise batches with :func:`model_input`)."""

    def __init__(self, crops: PreparedCrops):
        if crops.spec.purpose != "eval":
            raise ValueError(f"PoseDataset serves final crops, not {crops.spec}")
        self.crops = crops
        self.image_size = crops.spec.image_size
        self.protocol = crops.spec.protocol

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = np.array(self.crops.images[index])
        return torch.from_numpy(image), torch.from_numpy(self.crops.angles_deg[index].copy())


def training_dataset(
    samples: list[Sample],
    image_size: int,
    protocol: CropProtocol,
    seed: int = 0,
    workers: int = 0,
    description: str = "training crops",
    framing: FramingAugmentation = NO_FRAMING,
) -> TrainingRegions:
    """The random training crops of ``samples`` under crop ``protocol`` at ``image_size``, from
    their training store (built on first use; with contexts when ``framing`` re-frames crops),
    with item randomness from ``seed``: batches of cached regions, made into crops on the device
    by :func:`headpose.crops.training_batches.training_images`."""
    spec = StoreSpec(image_size, protocol, "train", framing.context_extent())
    return TrainingRegions(prepare_crops(samples, spec, workers, description), seed, framing)


def evaluation_dataset(
    samples: list[Sample], image_size: int, protocol: CropProtocol, workers: int = 0
) -> PoseDataset:
    """The dataset the validation and the evaluate stage score a model on.

    Reads ``samples`` from their evaluation store (built on first use): each the fixed
    evaluation crop of ``protocol`` (k = 0.2, eval margins; a stored-box sample its box) at
    ``image_size``. Items are ``(image uint8, angles_deg)``; ``dataset.crops.entries[i]`` names
    item ``i``.
    """
    spec = StoreSpec(image_size, protocol, "eval")
    return PoseDataset(prepare_crops(samples, spec, workers, "evaluation crops"))
