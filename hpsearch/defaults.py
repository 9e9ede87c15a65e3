"""The defaults `--help` shows, in a module that imports nothing, so the CLI starts without torch or Optuna."""

DEFAULT_STORAGE = "sqlite:///hpsearch.db"  # an embedded file in the current directory
DEFAULT_HEARTBEAT_S = 30  # a trial whose worker is silent for 2 heartbeats is failed and retried
DEFAULT_KEEP = 3  # the best this many completed trials keep their trained weights
DEFAULT_HOST = "127.0.0.1"  # the dashboard listens on this machine only
DEFAULT_PORT = 8080
