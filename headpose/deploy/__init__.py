"""Deployment: ONNX/TorchScript export with int8 quantisation, and the backbone benchmark (the
runtimes they use are in :mod:`headpose.inference`)."""
