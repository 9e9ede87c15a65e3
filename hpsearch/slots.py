"""One lock per study, shared by every worker, around "is there room for another trial? start it".

Optuna's own stopping rule (MaxTrialsCallback) is checked after a trial ends, so N workers may
overshoot a total by up to N-1 trials. hpsearch promises exact totals, so a worker holds this
lock from counting the study's trials until its new trial exists in the storage (a few
milliseconds), never while training. SQLite studies live on one machine: a file lock beside
the database. PostgreSQL studies span machines: a session-level advisory lock in the server.
Other storages get no lock, and a total may then be overshot by a trial or two.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import filelock
import sqlalchemy

from hpsearch.paths import slug
from hpsearch.storage import driver_url, sqlite_file


class NoLock:
    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class FileLock(NoLock):
    def __init__(self, path: Path):
        self._lock = filelock.FileLock(str(path))

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()


class PostgresAdvisoryLock(NoLock):
    """pg_advisory_lock on a connection of our own: it excludes other hpsearch workers only."""

    def __init__(self, url: str, name: str):
        self._key = int.from_bytes(hashlib.sha256(f"hpsearch:{name}".encode()).digest()[:8], "big", signed=True)
        self._engine = sqlalchemy.create_engine(driver_url(url), poolclass=sqlalchemy.pool.NullPool)
        self._connection: sqlalchemy.Connection | None = None

    def acquire(self) -> None:
        self._connection = self._engine.connect()
        self._connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})

    def release(self) -> None:
        if self._connection is not None:
            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        self.release()
        self._engine.dispose()


def study_lock(storage_url: str, study_name: str) -> NoLock:
    """The lock that serialises trial starts of `study_name` on this storage."""
    db = sqlite_file(storage_url)
    if db is not None:
        return FileLock(db.with_name(f"{db.name}.{slug(study_name)}.lock"))
    if storage_url.startswith(("postgresql:", "postgresql+")):
        return PostgresAdvisoryLock(storage_url, study_name)
    return NoLock()
