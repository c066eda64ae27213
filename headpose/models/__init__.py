"""The networks: the model registry (arch name -> constructor, ImageNet weights, stem), the
CBAM blocks, the head-pose network, the angle bins with their expectation mode, and checkpoints."""
