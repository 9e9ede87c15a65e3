"""Storage URLs: which one to use, how to open it, and how to print it without its password."""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna
import sqlalchemy.exc

from hpsearch.errors import StorageError

DEFAULT_STORAGE = "sqlite:///hpsearch.db"  # an embedded file in the current directory
SQLITE_BUSY_TIMEOUT_S = 60  # several local workers may write at once: wait for the lock, do not fail


def storage_url(given: str | None) -> str:
    """--storage, else $HPSEARCH_STORAGE, else the SQLite file hpsearch.db here."""
    return given or os.environ.get("HPSEARCH_STORAGE") or DEFAULT_STORAGE


def mask(url: str) -> str:
    """The URL with any password replaced by ***, fit for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, or StorageError with one line saying what to fix."""
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.parent.exists() or not os.access(path.parent, os.W_OK):
            raise StorageError(f"cannot write the SQLite storage {path}: its folder {path.parent.resolve()} "
                               "does not exist or is not writable (choose another with --storage)")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(f"cannot open storage {mask(url)}: {mask(reason)}") from None
