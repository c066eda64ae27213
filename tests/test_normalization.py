"""Input normalisation comes from the backbone's registry entry, is stored in checkpoints, and
every input path uses the stored values."""

from __future__ import annotations

import numpy as np
import torch
from helpers import as_samples
from model_fixtures import write_checkpoint
from protocol_fixtures import HOPENET
from training_fixtures import write_tiny_dataset

from headpose.crops.pipeline import evaluation_dataset, preprocess
from headpose.evaluation.evaluate import evaluate
from headpose.inference.loading import open_model
from headpose.models.registry import IMAGENET, Normalization, get_arch

HALF = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_torchvision_backbones_keep_imagenet_and_timm_ones_take_their_pretrained_config():
    assert get_arch("resnet18").normalization == IMAGENET
    assert get_arch("timm/repvgg_a0").normalization == IMAGENET
    # timm's ViTs are pretrained on inputs scaled to [-1, 1]
    assert get_arch("timm/vit_tiny_patch16_224").normalization == HALF
    assert HALF.meta() == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    assert Normalization.from_meta(HALF.meta()) == HALF


def test_evaluation_normalises_by_the_checkpoints_stored_values(tmp_path):
    stems = write_tiny_dataset(tmp_path / "data", 4, size=40)
    checkpoint = write_checkpoint(tmp_path / "half.pt", "resnet18", **HALF.meta())
    loaded = open_model(checkpoint, device="cpu")
    result = evaluate(loaded, as_samples(stems), "tiny", workers=1)
    model = loaded.model
    image, _ = evaluation_dataset(as_samples(stems[:1]), 32, HOPENET, workers=1)[0]
    with torch.inference_mode():
        stored = model(preprocess(image.numpy(), HALF)[None])[0].numpy()
        imagenet = model(preprocess(image.numpy(), IMAGENET)[None])[0].numpy()
    np.testing.assert_allclose(result.errors.predicted_deg[0], stored, atol=1e-4)
    assert np.abs(imagenet - stored).max() > 1e-3  # the two normalisations differ here
