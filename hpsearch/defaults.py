"""The defaults `--help` shows, in a module that imports nothing heavy, so the CLI starts without torch or Optuna."""

import os
from pathlib import Path

DEFAULT_STORAGE = "sqlite:///hpsearch.db"  # an embedded file in the current directory
DEFAULT_HEARTBEAT_S = 30  # a trial whose worker is silent for 2 heartbeats is failed and retried
DEFAULT_KEEP = 3  # the best this many completed trials keep their trained weights
DEFAULT_HOST = "127.0.0.1"  # the dashboard listens on this machine only
DEFAULT_PORT = 8080


def default_data_dir() -> Path:
    """Where datasets live and are fetched to when no --data-dir is given: $HPSEARCH_DATA_DIR, else ./data."""
    return Path(os.environ.get("HPSEARCH_DATA_DIR", "data"))
