"""hpsearch: hyperparameter search for image classifiers, from one study file (see README.md)."""

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it from here
