"""Inference: the building blocks every use of a model shares, below evaluation, training and
deployment: the one opener of model files (a checkpoint, a HopeNet snapshot or an ONNX file, with
the runtime chosen: :mod:`~headpose.inference.loading`), a model (PyTorch or ONNX Runtime) as a
function from normalised crops to degrees (:mod:`~headpose.inference.runtime`), its plain ONNX
export (:mod:`~headpose.inference.onnx_export`), its predictions over batches of crops
(:mod:`~headpose.inference.batches`), what a model file says about how to feed it (a
checkpoint's meta, an ONNX file's metadata: :mod:`~headpose.inference.metadata`), and its speed
(:mod:`~headpose.inference.timing`)."""
