"""Storage URLs: which one to use, how to open it, and how to print it without its password."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy.exc

from hpsearch.defaults import DEFAULT_HEARTBEAT_S, DEFAULT_STORAGE
from hpsearch.errors import StorageError

SQLITE_BUSY_TIMEOUT_S = 60  # several local workers may write at once: wait for the lock, do not fail


def storage_url(given: str | None) -> str:
    """--storage, else $HPSEARCH_STORAGE, else the SQLite file hpsearch.db here."""
    return given or os.environ.get("HPSEARCH_STORAGE") or DEFAULT_STORAGE


def mask(url: str) -> str:
    """The URL with any password replaced by ***, fit for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


MAX_RETRIES = 3


def sqlite_file(url: str) -> Path | None:
    """The database file of an `sqlite:///` URL, or None for other storages (and in-memory SQLite)."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def folder_beside(url: str, suffix: str, env_var: str) -> Path:
    """A folder that belongs to this storage: x-SUFFIX/ beside an SQLite file x.db, else $ENV_VAR or
    ./hpsearch-SUFFIX (for a server storage every machine must see the same folder to share it)."""
    db = sqlite_file(url)
    if db is not None:
        return db.with_name(f"{db.stem}-{suffix}")
    return Path(os.environ.get(env_var) or f"hpsearch-{suffix}")


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna marks heartbeats and their retries "experimental" (since 2.8); they are what hpsearch needs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def driver_url(url: str) -> str:
    """postgresql:// spelled with the psycopg 3 driver hpsearch installs (SQLAlchemy < 2.1 would pick psycopg2)."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Queues a failed trial's copy, same parameters and epochs reported so far, at most MAX_RETRIES times."""
    with quiet_experimental():
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)


def open_storage(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT_S) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, or StorageError with one line saying what to fix.

    Running trials send a heartbeat; one whose worker died (SIGKILL, a lost machine) is marked
    FAIL once its heartbeat is older than the grace period, and a copy with the same parameters
    is queued so the study still reaches its total.
    """
    engine_kwargs = {}
    path = sqlite_file(url)
    if path is not None:
        check_sqlite_folder(path)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    try:
        with quiet_experimental():
            return optuna.storages.RDBStorage(
                driver_url(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=retry_callback())
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(f"cannot open storage {mask(url)}: {mask(reason)}") from None


def check_sqlite_folder(path: Path) -> None:
    """StorageError unless the SQLite file `path` can be made or written: its folder exists and is writable."""
    if not path.parent.exists() or not os.access(path.parent, os.W_OK):
        raise StorageError(f"cannot write the SQLite storage {path}: its folder {path.parent.resolve()} "
                           "does not exist or is not writable (choose another with --storage)")


def is_new_sqlite(url: str) -> bool:
    """Whether `url` is an SQLite file that does not exist yet (open_storage would create it)."""
    path = sqlite_file(url)
    return path is not None and not path.exists()


def open_existing(url: str) -> optuna.storages.BaseStorage:
    """open_storage for readers: an SQLite file that does not exist is refused instead of created, so
    `best`, `export`, `report` and `dashboard` on a wrong --storage write nothing."""
    if is_new_sqlite(url):
        raise StorageError(f"no storage {sqlite_file(url)}: nothing has run there yet (`hpsearch run` creates it; "
                           "--storage or $HPSEARCH_STORAGE chooses another)")
    return open_storage(url)
