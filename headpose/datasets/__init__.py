"""The datasets: their registered formats and the one door to a sample
(:mod:`headpose.datasets.registry`: :class:`~headpose.datasets.registry.Sample`, read into
format-neutral :class:`~headpose.datasets.labels.Labels`), sample naming, the train/val/test file
lists, 300W_AUG (in-plane rotated training copies) and the angle distributions of the sets."""
