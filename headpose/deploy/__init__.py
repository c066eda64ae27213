"""Deployment: ONNX/TorchScript export with int8 quantisation (ONNX files carry their
metadata), loading a checkpoint or an ONNX file to predict with, and the backbone benchmark (the
runtimes they use are in :mod:`headpose.inference`)."""
