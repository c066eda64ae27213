"""The plain ONNX export of a model: its graph and the metadata that describes it.

:func:`export_onnx` writes an :class:`~headpose.models.network.AnglesModel` as one self-contained
fp32 ONNX file: input ``image``, a float batch ``(N, 3, S, S)`` of normalised crops (dynamic batch
axis), output ``angles_deg``, ``(N, 3)`` yaw, pitch, roll in degrees (the head's conversion
included), and the model's :class:`~headpose.inference.metadata.ModelDescription` in its
``metadata_props``. Files are byte-identical wherever the project and its environment live
(:func:`drop_source_paths`). It sits below the evaluation so that the one opener of model files
(:func:`headpose.inference.loading.open_model`) can run a checkpoint in ONNX Runtime; the
deployment's quantisation, parity and export stage build on it (:mod:`headpose.deploy.export`).
"""

from __future__ import annotations

import os
import warnings

import onnx
import torch

from headpose.inference.metadata import INPUT_NAME, OUTPUT_NAME, ModelDescription, onnx_metadata
from headpose.io.files import atomic_path
from headpose.models.network import AnglesModel

ONNX_OPSET = 18  # the torch.export-based exporter's native opset; ORT 1.18+ runs it
# Node metadata holding the Python stack of each node: absolute paths of the checkout and of the
# environment, so the same model exported from another folder would differ in its bytes.
SOURCE_PATH_KEYS = ("pkg.torch.onnx.stack_trace",)


def example_batch(image_size: int, batch: int = 2) -> torch.Tensor:
    """A fixed random ``(batch, 3, S, S)`` input (seed 0): what exports trace with."""
    return torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))


def export_onnx(model: AnglesModel, path: str | os.PathLike, description: ModelDescription) -> None:
    """Write ``model`` (on the CPU) as a self-contained ONNX file with a dynamic batch axis, its
    input ``description.image_size`` pixels square, and ``description`` as its metadata."""
    model = model.cpu().eval()
    image_size = description.image_size
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(path) as temp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example_batch(image_size),),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        proto = program.model_proto
        drop_source_paths(proto)
        set_metadata(proto, onnx_metadata(description))
        onnx.save(proto, str(temp))
        onnx.checker.check_model(str(temp))


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Set ``props`` in the model's ``metadata_props`` (replacing entries of the same keys)."""
    kept = [entry for entry in model.metadata_props if entry.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def drop_source_paths(model: onnx.ModelProto) -> None:
    """Remove :data:`SOURCE_PATH_KEYS` from every node (graph, subgraphs and functions), so an
    export is byte-identical wherever the project and its environment live."""
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs:
        graph = graphs.pop()
        nodes.extend(graph.node)
        for node in graph.node:
            graphs.extend(attribute.g for attribute in node.attribute if attribute.HasField("g"))
            graphs.extend(sub for attribute in node.attribute for sub in attribute.graphs)
    for node in nodes:
        kept = [entry for entry in node.metadata_props if entry.key not in SOURCE_PATH_KEYS]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
