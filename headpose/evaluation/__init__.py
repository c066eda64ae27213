"""Scoring a model: the error metrics (one ``MAE_KEYS``), test sets and the guard of published
ones (AFLW2000's 1969 images), the evaluation of a model and its report, and the framing sweep.
The inference path they share with training, export and the benchmark is
:mod:`headpose.inference`."""
