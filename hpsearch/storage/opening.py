"""Opening a storage: Optuna's RDB storage, its trials read as rows (rows.py) behind one cache a process; readers
create nothing; every database error as one line that says what to do."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.trial import FrozenTrial

from hpsearch.defaults import DEFAULT_HEARTBEAT_S
from hpsearch.errors import StorageError
from hpsearch.storage.locks import NoLock, shared_lock
from hpsearch.storage.optuna_private import TESTED_OPTUNA, TrialCache, optuna_cache, untested_optuna
from hpsearch.storage.rows import UNREAD_COLUMNS, TrialRowsStorage
from hpsearch.storage.urls import (
    CONNECT_TIMEOUT_S,
    driver_url,
    engine_options,
    is_new_sqlite,
    mask,
    refuse_unusable,
    scrub,
    sqlite_file,
)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna marks heartbeats and their retries "experimental" (since 2.8); they are what hpsearch needs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT_S, reading: bool = False,
                 on_lost: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, or StorageError with one line saying what to fix.

    Running trials send a heartbeat; one whose worker died (SIGKILL, a lost machine) is marked FAIL once its
    heartbeat is older than the grace period, by hpsearch (search/retries.fail_lost_trials) or by Optuna before a
    trial starts, which then calls `on_lost` with it (a run gives retries.queue_retry, so that a copy is queued).
    """
    refuse_unusable(url)
    _warn_if_untested()
    lock: NoLock = NoLock()
    if sqlite_file(url) is not None and not reading:
        check_sqlite_folder(sqlite_file(url))
    try:
        # Opening creates the tables of a new database: processes starting together take turns. A reader opens
        # a storage that exists, so it creates nothing and takes no lock (it may sit in a read-only place).
        if not reading:
            lock = shared_lock(url)
            lock.acquire()
        with quiet_experimental():
            return (TrialRowsStorage.for_reading if reading else TrialRowsStorage)(
                driver_url(url), engine_kwargs=engine_options(url), heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat, heartbeat_stale_trial_callback=on_lost)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(f"cannot open storage {mask(url)}: {driver_reason(exc, url)}") from None
    except RuntimeError as exc:  # Optuna's check of its tables' schema, which says what to run
        raise StorageError(f"cannot open storage {mask(url)}: {scrub(str(exc), url)}") from None
    finally:
        lock.close()


def cached(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """Optuna's cache in front of an RDB storage, made once to be shared by every Study a process opens on it.

    Each Study made on a bare RDBStorage puts a cache of its own in front of it, and each cache reads every
    trial of the study once: a run that checks the study (check_existing) and then opens it would read twice.
    Each later read takes the new and the unfinished trials from the storage again, finished ones from memory;
    for an RDB storage, through TrialCache (optuna_private.py), which reads faster than Optuna's own cache.
    """
    if isinstance(storage, optuna.storages.RDBStorage):
        return TrialCache(storage)
    return optuna_cache(storage)


@functools.cache
def _warn_if_untested() -> None:
    """Say once a process where the installed Optuna is not one the tests ran on: hpsearch reads Optuna's private
    tables and classes (optuna_private.py), which any release may change. A warning, not a refusal: a study's data
    stays readable by Optuna itself whatever happens."""
    if version := untested_optuna():
        tested = ", ".join(f"{minor}.*" for minor in TESTED_OPTUNA)
        log.warning("optuna %s is not a version hpsearch was tested with (%s): its private storage code may have "
                    "changed; if trials look wrong, install a tested one (pip install 'optuna==%s')", version, tested,
                    f"{TESTED_OPTUNA[-1]}.*")
    if UNREAD_COLUMNS:
        log.warning("optuna's tables hold columns hpsearch does not read (%s): trials are read through Optuna's own, "
                    "slower reader", ", ".join(UNREAD_COLUMNS))


def check_sqlite_folder(path: Path) -> None:
    """StorageError unless the SQLite file `path` can be made or written: its folder exists and is writable (SQLite
    writes a journal beside the file), and the file, if there, is writable. Readers skip this (open_existing)."""
    fix = "(choose another with --storage; best, report and export read it where it is)"
    if not path.parent.exists():
        raise StorageError(f"cannot write the SQLite storage {path}: its folder {path.parent.absolute()} does not "
                           "exist (choose another with --storage)")
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(f"the SQLite storage {path} is read-only: make it writable {fix}")
    if not os.access(path.parent, os.W_OK):
        raise StorageError(f"cannot write the SQLite storage {path}: its folder {path.parent.absolute()} is not "
                           f"writable {fix}")


def open_existing(url: str) -> optuna.storages.BaseStorage:
    """open_storage for readers: an SQLite file that does not exist is refused instead of created, so
    `best`, `export`, `report` and `dashboard` on a wrong --storage write nothing. An empty file is no storage
    either: opened, it would get Optuna's tables."""
    if is_new_sqlite(url) or (sqlite_file(url) is not None and sqlite_file(url).stat().st_size == 0):
        raise StorageError(f"no storage {sqlite_file(url)}: nothing has run there yet (`hpsearch run` creates it; "
                           "--storage or $HPSEARCH_STORAGE chooses another)")
    return open_storage(url, reading=True)


# What a database error means for the user, by the text SQLite or the server gives, and what to do.
_ADVICE = (
    (("malformed", "not a database", "file is encrypted"),
     "the file is damaged; nothing was written: restore it from a copy, or recover what is readable with "
     "`sqlite3 FILE .recover | sqlite3 recovered.db` and give --storage sqlite:///recovered.db"),
    (("database or disk is full", "no space left"),
     "the disk holding the storage is full: free space and run the same command again (finished trials are kept; "
     "the interrupted one resumes)"),
    (("timeout expired",),  # psycopg and libpq: the server did not answer within connect_timeout
     f"no PostgreSQL server answered in time: check the host and port and that the server is up; a slow link "
     f"may need a longer wait: ?connect_timeout=SECONDS in the URL (hpsearch's default: {CONNECT_TIMEOUT_S} s)"),
    (("readonly database", "read-only"),
     "the storage is read-only here: make the file and its folder writable, or read it with best, report or "
     "export"),
)


def driver_reason(exc: BaseException, url: str | None = None) -> str:
    """A database error as one line: the driver's first line, masked (and scrubbed of `url`'s passwords), with
    what to do where it is known."""
    reason = mask(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
    reason = scrub(reason, url) if url else reason
    advice = next((text for needles, text in _ADVICE if any(n in reason.lower() for n in needles)), None)
    return f"{reason}: {advice}" if advice else reason


def storage_failure(exc: BaseException) -> StorageError | None:
    """A StorageError for a database error raised after the storage opened (mid-run, mid-read), or None for
    anything else. The CLI's error boundary turns it into one line instead of a traceback."""
    while exc is not None:  # Optuna wraps a failed commit in its StorageInternalError
        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            return StorageError(f"the storage failed: {driver_reason(exc)}")
        exc = exc.__cause__ or exc.__context__
    return None
