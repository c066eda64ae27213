"""Inference: the building blocks every use of a model shares, below evaluation, training and
deployment: a model (PyTorch or ONNX Runtime) as a function from normalised crops to degrees
(:mod:`~headpose.inference.runtime`), its predictions over batches of crops
(:mod:`~headpose.inference.batches`), and its speed (:mod:`~headpose.inference.timing`)."""
