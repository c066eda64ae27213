"""Scoring a model: the one inference path shared by validation, evaluation, export and
benchmark, the error metrics, the published test sets' guard, and the evaluation report."""
