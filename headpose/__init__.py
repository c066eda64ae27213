"""headpose: a reproducible HopeNet-style head-pose pipeline (data, training, evaluation)."""

__version__ = "0.1.0"
