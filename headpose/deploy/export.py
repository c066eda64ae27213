"""Deployment files: ONNX and TorchScript export with parity checks, and int8 quantisation.

The plain ONNX export (graph and metadata) is :func:`headpose.inference.onnx_export.export_onnx`;
this module adds what a deployment needs around it. Both exports hold the whole
:class:`headpose.models.network.AnglesModel`: input ``image`` is a float batch ``(N, 3, S, S)`` of
face crops, RGB, normalised as the backbone expects (``(x / 255 - mean) / std`` with the mean/std
stored in the checkpoint meta); output ``angles_deg`` is ``(N, 3)``: yaw, pitch, roll in degrees
(the head's conversion included: the bins' softmax expectation, or the 6D rotation's Gram-Schmidt
and Euler decomposition). The batch axis is dynamic. So a deployment needs no post-processing beyond
reading three numbers per face. Every ONNX file, fp32 and int8, describes itself: its
``metadata_props`` hold the input side, mean and std, the crop protocol, the head, the output's
order and unit and the training run's fingerprint (:mod:`headpose.inference.metadata`), which every
reader uses (:func:`headpose.inference.loading.open_model`). Checkpoints are opened by that one
opener, so backbones that can be re-parameterised (RepVGG, MobileOne) are exported fused, and the
export stage also writes the fused checkpoint (``model_fused.pt``).

int8: ONNX Runtime static post-training quantisation (QDQ format, per-channel int8 weights, uint8
activations, calibrated with MinMax on training crops through a CalibrationDataReader). Static
QDQ was measured faster than ONNX Runtime's dynamic quantisation on this CPU.

:func:`build_runtimes` is the one export -> quantise -> three runtimes sequence; the export stage
(:func:`export_for_deployment`) and the benchmark both score what it returns through the
evaluation's inference path.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from headpose.crops.pipeline import evaluation_dataset, training_dataset
from headpose.crops.protocols import CropProtocol
from headpose.crops.training_batches import training_images
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError
from headpose.evaluation.evaluate import predict_dataset
from headpose.evaluation.metrics import mae_summary
from headpose.inference.loading import open_model
from headpose.inference.metadata import INPUT_NAME, PRECISION_KEY, PREFIX, ModelDescription
from headpose.inference.onnx_export import ONNX_OPSET, example_batch, export_onnx, set_metadata
from headpose.inference.runtime import (
    AngleFunction,
    onnx_angle_function,
    onnx_session,
    torch_angle_function,
)
from headpose.io.files import atomic_directory, atomic_path, file_size_mb
from headpose.models.checkpoints import save_checkpoint
from headpose.models.network import AnglesModel
from headpose.models.registry import Normalization

# metrics/export.json has always called the PyTorch runtime "pytorch_fp32"
METRIC_NAMES = {"torch_fp32": "pytorch_fp32"}


def export_torchscript(model: AnglesModel, image_size: int, path: str | os.PathLike) -> None:
    """Write ``model`` (on the CPU) as a traced TorchScript file (``torch.jit.load`` reads it)."""
    model = model.cpu().eval()
    with atomic_path(path) as temp, warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example_batch(image_size))
        traced.save(str(temp))


def calibration_images(
    samples: list[Sample],
    image_size: int,
    protocol: CropProtocol,
    count: int = 256,
    seed: int = 0,
    workers: int = 0,
    *,
    normalization: Normalization,
) -> torch.Tensor:
    """``count`` training crops of crop ``protocol`` (random crops and flips, as in training),
    normalised by the model's ``normalization``.

    The samples are an evenly spaced subset of ``samples`` (a training list), so the activation
    ranges are fixed on the distribution the model was trained on.
    """
    chosen = samples[:: max(len(samples) // count, 1)][:count]
    dataset = training_dataset(chosen, image_size, protocol, seed, workers, "calibration crops")
    batch = dataset[list(range(len(dataset)))]
    images, _ = training_images(batch, image_size, protocol, torch.device("cpu"), normalization)
    return images


class CropCalibrationReader:
    """Feeds normalised crops to ONNX Runtime's calibrator, one batch at a time."""

    def __init__(self, images: torch.Tensor, batch_size: int = 16) -> None:
        self.batches = [
            {INPUT_NAME: images[start : start + batch_size].numpy().astype(np.float32)}
            for start in range(0, len(images), batch_size)
        ]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def quantize_onnx(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration_images: torch.Tensor,
) -> None:
    """Quantise an exported fp32 ONNX model to static int8 for the CPU.

    ``calibration_images`` (normalised crops like the training inputs; a few hundred are plenty)
    fix the activation ranges. The int8 file carries the fp32 file's metadata, marked ``int8``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as work, atomic_path(int8_path) as temp:
        # The exporter's stored shapes of the head weights trip the quantisers' re-inference
        # ("Inferred shape and existing shape differ"): drop them, let ORT re-infer.
        plain = onnx.load(str(fp32_path))
        recorded = {entry.key: entry.value for entry in plain.metadata_props}
        del plain.graph.value_info[:]
        plain_path = Path(work) / "plain.onnx"
        onnx.save(plain, str(plain_path))
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(plain_path), str(prepared), skip_symbolic_shape=True)
        if calibration_images is None or len(calibration_images) == 0:
            raise HeadposeError("static quantisation needs calibration images")
        quantize_static(
            str(prepared),
            str(temp),
            CropCalibrationReader(calibration_images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=head_conversion_nodes(onnx.load(str(prepared))),
        )
        quantised = onnx.load(str(temp))
        set_metadata(quantised, {**recorded, **int8_metadata(recorded)})
        onnx.save(quantised, str(temp))


def int8_metadata(recorded: dict[str, str]) -> dict[str, str]:
    """The metadata entries that change when a file with metadata ``recorded`` is quantised."""
    return {PRECISION_KEY: '"int8"'} if any(key.startswith(PREFIX) for key in recorded) else {}


NETWORK_CLASS = "headpose.models.network.HeadPoseNet"


def head_conversion_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes of the head's conversion to degrees (the bins' expectation, the 6D
    rotation's Gram-Schmidt and Euler decomposition): every node the exporter did not trace
    inside the network module. They stay in float: rounding their few, cheap operations to 8
    bits would cost accuracy (angles from atan2 of quantised matrix entries) and save no time."""
    names = []
    for node in model.graph.node:
        scope = {prop.key: prop.value for prop in node.metadata_props}
        hierarchy = scope.get("pkg.torch.onnx.class_hierarchy")
        if hierarchy is not None and NETWORK_CLASS not in hierarchy:
            names.append(node.name)
    return names


def max_parity_error_deg(
    model: AnglesModel, onnx_path: str | os.PathLike, images: torch.Tensor
) -> float:
    """Largest absolute difference (degrees) between PyTorch and ONNX Runtime angles on images."""
    reference = torch_angle_function(model.cpu().eval())(images)
    exported = onnx_angle_function(onnx_session(onnx_path))(images)
    return float(np.abs(reference - exported).max())


RUNTIME_NAMES = ("torch_fp32", "onnx_fp32", "onnx_int8")


def build_runtimes(
    model: AnglesModel,
    description: ModelDescription,
    onnx_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration: torch.Tensor,
    device: torch.device | str = "cpu",
    threads: int | None = None,
) -> dict[str, AngleFunction]:
    """Export ``model`` (described by ``description``) to ``onnx_path``, quantise that to
    ``int8_path``, and return the three runtimes (:data:`RUNTIME_NAMES`): PyTorch fp32 on
    ``device``, ONNX Runtime fp32 and int8 on the CPU (``threads`` intra-op threads; None: ONNX
    Runtime's choice)."""
    export_onnx(model, onnx_path, description)  # moves the model to the CPU
    model.to(device)
    quantize_onnx(onnx_path, int8_path, calibration)
    return {
        "torch_fp32": torch_angle_function(model),
        "onnx_fp32": onnx_angle_function(onnx_session(onnx_path, threads)),
        "onnx_int8": onnx_angle_function(onnx_session(int8_path, threads)),
    }


def export_for_deployment(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    calibration_samples: list[Sample],
    test_samples: list[Sample],
    workers: int = 0,
    seed: int = 0,
    crop_protocol: CropProtocol | None = None,
) -> dict:
    """Write ``out_dir/model.onnx`` and ``out_dir/model_int8.onnx`` (and ``model_fused.pt``, the
    fused checkpoint, when the backbone is re-parameterised); return their metrics.

    The int8 model is calibrated on training crops (``calibration_samples``); both are evaluated
    on ``test_samples`` with the evaluation code, so the metrics say what int8 costs in MAE. The
    parity is the largest |PyTorch - ONNX Runtime fp32| angle over the test crops. Crops follow
    ``crop_protocol`` (default: the one the checkpoint was trained on).
    """
    opened = open_model(checkpoint, "torch", "cpu")
    model, meta, description = opened.model, opened.meta, opened.description
    image_size, normalization = description.image_size, description.normalization
    protocol = description.crop_protocol if crop_protocol is None else crop_protocol
    calibration = calibration_images(
        calibration_samples,
        image_size,
        protocol,
        seed=seed,
        workers=workers,
        normalization=normalization,
    )
    test_set = evaluation_dataset(test_samples, image_size, protocol, workers)
    with atomic_directory(out_dir) as temp:
        functions = build_runtimes(
            model, description, temp / "model.onnx", temp / "model_int8.onnx", calibration
        )
        runs = {
            name: predict_dataset(function, test_set, normalization=normalization)
            for name, function in functions.items()
        }
        files = ["model.onnx", "model_int8.onnx"]
        if model.network.fused:
            save_checkpoint(temp / "model_fused.pt", model.network, meta)
            files.append("model_fused.pt")
        sizes_mb = {name: file_size_mb(temp / name) for name in files}
    parity = np.abs(runs["onnx_fp32"].predicted_deg - runs["torch_fp32"].predicted_deg).max()
    mae = {
        METRIC_NAMES.get(name, name): mae_summary(run.absolute_deg) for name, run in runs.items()
    }
    return {
        "exported": True,
        "crop_protocol": protocol.name,
        "fused": model.network.fused,
        "onnx_opset": ONNX_OPSET,
        "file_mb": {"checkpoint": file_size_mb(checkpoint), **sizes_mb},
        "parity_max_abs_deg": round(float(parity), 5),
        "mae": mae,
        "int8_mae_mean_increase_deg": round(mae["onnx_int8"]["mean"] - mae["onnx_fp32"]["mean"], 4),
    }


EXPORT_FORMATS = ("onnx", "torchscript")


def export_file(
    checkpoint: str | os.PathLike, out: str | os.PathLike, file_format: str
) -> tuple[ModelDescription, float | None]:
    """Export ``checkpoint`` as one ``file_format`` file (see :data:`EXPORT_FORMATS`) to ``out``;
    return the model's description and, for ONNX, the largest |PyTorch - ONNX Runtime| angle on
    random inputs."""
    opened = open_model(checkpoint, "torch", "cpu")
    model, description = opened.model, opened.description
    if file_format == "onnx":
        export_onnx(model, out, description)
        parity = max_parity_error_deg(model, out, example_batch(description.image_size, 4))
        return description, parity
    export_torchscript(model, description.image_size, out)
    return description, None
