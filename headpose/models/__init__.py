"""The networks: the model registry (arch name -> constructor, ImageNet weights, stem; torchvision
names and any ``timm/<name>``), the CBAM blocks, the head-pose network, the heads (the angle bins
with their expectation mode, the 6D rotation), checkpoints, and the check of params.yaml's model
keys against all of these."""
