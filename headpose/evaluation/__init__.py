"""Scoring a model: the one inference path shared by validation, evaluation, export and
benchmark, the error metrics, the AFLW2000 protocol guard, and the evaluation report."""
