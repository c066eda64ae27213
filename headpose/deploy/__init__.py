"""Deployment: angle functions for PyTorch and ONNX Runtime, ONNX/TorchScript export with int8
quantisation, and the backbone benchmark."""
