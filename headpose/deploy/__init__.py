"""Deployment: ONNX/TorchScript export with parity checks and int8 quantisation (ONNX files carry
their metadata), and the backbone benchmark. Model files are opened, and checkpoints exported to
plain ONNX, below the evaluation (:mod:`headpose.inference.loading`,
:mod:`headpose.inference.onnx_export`); the runtimes they use are in :mod:`headpose.inference`."""
