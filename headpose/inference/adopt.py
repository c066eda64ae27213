"""``headpose adopt``'s work: a model file made elsewhere, described by a model card, written
with the card in its ``headpose.*`` metadata so that every reader takes it unchanged.

:func:`adopt` opens the file with the card through the one opener
(:func:`headpose.inference.loading.open_model`, which checks the card against the graph: input
size, layout, channels, the output's shape for its kind), replaces every ``headpose.*`` entry of
its ``metadata_props`` by the card's (:func:`headpose.inference.card.card_metadata`, under
:data:`~headpose.inference.metadata.CARD_METADATA_VERSION`), and writes the result atomically
(:func:`headpose.io.files.atomic_path`), opened once more before it takes its place: a card that
contradicts the graph, or any other problem, is one line and writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import onnx

from headpose.errors import HeadposeError
from headpose.inference.card import ModelCard, card_metadata
from headpose.inference.loading import is_onnx_file, open_model
from headpose.inference.metadata import CARD_METADATA_VERSION, PREFIX
from headpose.inference.onnx_export import set_metadata
from headpose.io.files import atomic_path


def adopt(
    model: str | os.PathLike, card: ModelCard | str | os.PathLike, out: str | os.PathLike
) -> Path:
    """Write ``model`` (an ``.onnx`` file) described by ``card`` (a card or its YAML file) to
    ``out`` (an ``.onnx`` path; may be ``model`` itself); return ``out``."""
    source, target = Path(model), Path(out)
    for path, what in ((source, "model"), (target, "--out")):
        if not is_onnx_file(path):
            raise HeadposeError(f"{what} {path}: expected an .onnx file")
    loaded = open_model(source, card=card)  # the card checked against the graph
    try:
        proto = onnx.load(str(source), load_external_data=False)
    except Exception as error:  # onnx raises its own (protobuf) errors for a damaged file
        raise HeadposeError(f"{source} is not a loadable ONNX model: {error}") from None
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in proto.graph.initializer):
        raise HeadposeError(
            f"{source} keeps weights in external files; adopt takes a self-contained file"
        )
    size = loaded.description.image_size  # the graph's, where the card left it out
    described = dataclasses.replace(
        loaded.card, input=dataclasses.replace(loaded.card.input, size=size)
    )
    values = {"metadata_version": CARD_METADATA_VERSION, **card_metadata(described)}
    kept = [entry for entry in proto.metadata_props if not entry.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    set_metadata(
        proto, {PREFIX + key: json.dumps(value, sort_keys=True) for key, value in values.items()}
    )
    with atomic_path(target) as temp:
        onnx.save(proto, str(temp))
        open_model(temp)  # it reads back as described
    return target
