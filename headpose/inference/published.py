"""Published head-pose models by name: where their files come from and how to read them.

A :class:`PublishedModel` names one or more public model files (each a URL and its pinned
SHA-256), their licence and source, and the model card that feeds them
(:mod:`headpose.inference.card`); several files are averaged as one model (the mean of their
decoded angles, as the author averages them). They are kept in :data:`PUBLISHED_MODELS` (a
:class:`headpose.registry.Registry`: a plugin registers more with :func:`register_published`,
a card and a URL each). :func:`published_files` fetches a model's files on first use into the
model cache (:func:`headpose.models.weights.cache_dir`, as the face detector's model) through
the package's one downloader (:func:`headpose.models.weights.fetch_file`: SHA-256 checked;
offline, one line naming the URL and where to put the file by hand).

``headpose.load(NAME)``, ``headpose predict --checkpoint NAME`` (``--model NAME``),
``headpose evaluate NAME`` and ``headpose sweep NAME`` take a name wherever a model file is
expected, through the one opener (:func:`headpose.inference.loading.open_model`); a file of
that name in the working folder wins over the registry.

Built in:

* ``fsanet``: FSA-Net (Yang et al., CVPR 2019) as re-implemented in PyTorch and exported to ONNX
  by github.com/omasaht/headpose-fsanet-pytorch (MIT licence), trained on 300W_LP: its two
  files (FSA-Caps 1x1 and FSA-Caps Var) at commit 002549c9, averaged; 64 px BGR input
  ``(x - 127.5) / 128``, a fixed batch of 1, yaw/pitch/roll degrees, FSA-Net's own crop
  (:mod:`headpose.crops.protocols.fsanet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headpose.inference.card import ModelCard, parse_card
from headpose.models.weights import cache_dir, fetch_file
from headpose.registry import Registry


@dataclass(frozen=True)
class PublishedFile:
    """One public model file: its name in the cache, URL and SHA-256 (hex)."""

    name: str
    url: str
    sha256: str


@dataclass(frozen=True)
class PublishedModel:
    """A named published model (see the module docstring)."""

    name: str
    files: tuple[PublishedFile, ...]
    card: ModelCard
    licence: str
    source: str


PUBLISHED_MODELS: Registry[PublishedModel] = Registry("published model")


def register_published(model: PublishedModel) -> PublishedModel:
    """Register ``model`` under its name (one name, one model)."""
    return PUBLISHED_MODELS.register(model)


def published_model(name: str) -> PublishedModel | None:
    """The registered model called ``name``, or None."""
    return PUBLISHED_MODELS.get(name) if name in PUBLISHED_MODELS.names() else None


def published_names() -> tuple[str, ...]:
    """The names of the registered published models."""
    return PUBLISHED_MODELS.names()


def published_files(model: PublishedModel) -> list[Path]:
    """The cached copies of ``model``'s files, downloaded first where missing (or failing
    their SHA-256 check)."""
    folder = cache_dir() / "published" / model.name
    return [
        fetch_file(item.url, folder / item.name, item.sha256, f"published model {model.name}")
        for item in model.files
    ]


FSANET_COMMIT = "002549c981b607f722e0810d999afcde7e5aaa66"
FSANET_URL = (
    f"https://raw.githubusercontent.com/omasaht/headpose-fsanet-pytorch/{FSANET_COMMIT}/pretrained/"
)
# How the author's src/demo.py feeds the files and reads them.
FSANET_CARD = {
    "input": {
        "size": 64,
        "layout": "NCHW",
        "channels": "BGR",
        "scale": 255,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.50196, 0.50196, 0.50196],  # (x - 127.5) / 128
    },
    "output": {"kind": "euler", "unit": "degrees", "order": ["yaw", "pitch", "roll"]},
    "crop_protocol": "fsanet",
}

register_published(
    PublishedModel(
        name="fsanet",
        files=(
            PublishedFile(
                "fsanet-1x1-iter-688590.onnx",
                FSANET_URL + "fsanet-1x1-iter-688590.onnx",
                "d85e90cb4b9d3a87e81bbfdcfcd130cbe0e175407042e439a570aa396c44eda6",
            ),
            PublishedFile(
                "fsanet-var-iter-688590.onnx",
                FSANET_URL + "fsanet-var-iter-688590.onnx",
                "2877b1db98e3dc66468e90df8db4a21059facd1c3f107af91c6d4fe6476a03e1",
            ),
        ),
        card=parse_card(FSANET_CARD, "the fsanet card"),
        licence="MIT (Copyright (c) 2020 Omar Hassan)",
        source="github.com/omasaht/headpose-fsanet-pytorch, pretrained/ at " + FSANET_COMMIT,
    )
)
