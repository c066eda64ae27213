"""Face crops: the crop protocols (how a face is framed), the crop store (every sample decoded
once into memory-mapped crops) and the training batches cut from it on the model's device.
Dataset lists and formats live in :mod:`headpose.datasets`."""
