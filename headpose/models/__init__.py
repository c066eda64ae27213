"""The networks: the model registry (arch name -> constructor, ImageNet weights, stem, input
normalisation; torchvision names and any ``timm/<name>``), the CBAM blocks, the head-pose network,
the heads (the package :mod:`headpose.models.heads`: the :class:`~headpose.models.heads.Head`
interface and its registry; the angle bins with their expectation mode, the 6D rotation), our
checkpoint format, its validation, the conversion of HopeNet snapshots, pretrained weights, and
the check of params.yaml's model keys against all of these."""
