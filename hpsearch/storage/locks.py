"""The locks a storage's processes share: a study's, or the storage's own while it is made. An flock beside an
SQLite file, an advisory lock in a PostgreSQL server; a wait is bounded and said."""

from __future__ import annotations

import hashlib
import logging
import shlex
import time
from pathlib import Path

import filelock
import sqlalchemy

from hpsearch import stopping
from hpsearch.errors import StorageError
from hpsearch.paths import slug
from hpsearch.storage.folders import side_folder
from hpsearch.storage.urls import (
    driver_url,
    engine_options,
    is_postgresql,
    mask,
    sqlite_file,
)

log = logging.getLogger(__name__)


LOCK_POLL_S = (0.005, 0.1)  # the first and the longest pause between two tries of a held lock (doubling)
LOCK_BRIEF_S = 2.0  # a worker holds a study lock for milliseconds: a longer wait is said, and may reach a deadline
LOCK_SAY_EVERY_S = 60.0  # a wait is said again this often while it lasts
STOPPING_LOCK_WAIT_S = 10.0  # a process stopping at Ctrl-C or SIGTERM waits this long for a lock to tidy up


class LockWaitExpired(StorageError):
    """A shared lock still held by another worker when the waiter's deadline came."""


class NoLock:
    def acquire(self, deadline: float | None = None) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class SharedLock(NoLock):
    """A lock every process of a storage sees (shared_lock), taken by trying it between short pauses: a wait for a
    lock held elsewhere is said on stderr, gives up at the waiter's deadline, and stops at Ctrl-C or SIGTERM
    (stopping.check between tries). Acquiring a held lock or releasing a free one does nothing."""

    def __init__(self, what: str):
        self.what = what  # "the study lock of study NAME on URL", for the messages
        self.held = False

    def acquire(self, deadline: float | None = None) -> None:
        """Take the lock, waiting while another process holds it; LockWaitExpired once time.monotonic() passes
        `deadline` (having waited LOCK_BRIEF_S at least: a worker that comes at its deadline still gets a lock held
        for a moment by another)."""
        if self.held:
            return
        started = time.monotonic()
        said_at: float | None = None
        pause = LOCK_POLL_S[0]
        while not self._try():
            now = time.monotonic()
            if deadline is not None and now >= max(deadline, started + LOCK_BRIEF_S):
                holder, if_stuck = self._holder()
                raise LockWaitExpired(f"gave up after {now - started:.0f} s waiting for {self.what}: {holder} held it "
                                      f"all that time; if no other worker is running, {if_stuck}")
            if now - started >= LOCK_BRIEF_S and (said_at is None or now - said_at >= LOCK_SAY_EVERY_S):
                still = "waiting" if said_at is None else f"still waiting ({(now - started) / 60:.0f} min)"
                log.warning("%s for %s, held by %s", still, self.what, self._holder()[0])
                said_at = now
            stopping.check()
            time.sleep(pause)
            pause = min(2 * pause, LOCK_POLL_S[1])
        self.held = True

    def release(self) -> None:
        if self.held:
            self._release()
            self.held = False

    def close(self) -> None:
        self.release()

    def _try(self) -> bool:
        """One try, never blocking: whether this process holds the lock now."""
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _holder(self) -> tuple[str, str]:
        """Who holds the lock, as far as one can tell, and how to free it from a stuck holder."""
        raise NotImplementedError


class FileLock(SharedLock):
    """A lock file beside an SQLite database (an flock: the system frees it when its process ends)."""

    def __init__(self, path: Path, what: str):
        super().__init__(what)
        self.path = path
        self._lock = filelock.FileLock(str(path))

    def _try(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=False)
        except filelock.Timeout:
            return False
        return True

    def _release(self) -> None:
        self._lock.release(force=True)

    def _holder(self) -> tuple[str, str]:
        return (f"another worker (lock file {self.path})",
                f"a stuck process holds it: `fuser {shlex.quote(str(self.path))}` names it")


class PostgresAdvisoryLock(SharedLock):
    """pg_try_advisory_lock on a connection of our own: it excludes other hpsearch processes only, on any machine.
    The server frees it when that connection ends."""

    def __init__(self, url: str, key: str, what: str):
        super().__init__(what)
        self._key = advisory_key(key)
        self._engine = sqlalchemy.create_engine(driver_url(url), poolclass=sqlalchemy.pool.NullPool,
                                                isolation_level="AUTOCOMMIT", **engine_options(url))
        self._connection: sqlalchemy.Connection | None = None  # open while the lock is held or waited for

    def _try(self) -> bool:
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"),
                                        {"key": self._key}).scalar()

    def _release(self) -> None:
        self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})

    def release(self) -> None:
        super().release()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        self.release()
        self._engine.dispose()

    def _holder(self) -> tuple[str, str]:
        """The holder's server process, from pg_locks (which shows a bigint key as two 32-bit halves)."""
        pid = self._connection.execute(sqlalchemy.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = :high AND objid::bigint = :low "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"high": (self._key >> 32) & 0xFFFFFFFF, "low": self._key & 0xFFFFFFFF}).scalar()
        if pid is None:  # freed a moment ago
            return "another worker", "a stuck session holds it: pg_locks names it, pg_terminate_backend(pid) ends it"
        return (f"another worker (PostgreSQL session {pid})",
                f"a stuck session holds it: SELECT pg_terminate_backend({pid}) ends it")


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory lock key of a shared lock's name: 64 bits of its SHA-256."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def shared_lock(url: str, study_name: str | None = None) -> NoLock:
    """A lock that every process using this storage sees: a study's, or without a name the storage's own.

    SQLite storages live on one machine: a file in the storage's side folder (x-files/locks/storage.lock,
    x-files/locks/<study>.lock). PostgreSQL storages span machines: an advisory lock in the server. Other
    storages get none.
    """
    what = f"the storage lock of {mask(url)}" if study_name is None else \
        f"the study lock of study {study_name} on {mask(url)}"
    if sqlite_file(url) is not None:
        name = "storage" if study_name is None else slug(study_name)
        return FileLock(side_folder(url) / "locks" / f"{name}.lock", what)
    if is_postgresql(url):
        return PostgresAdvisoryLock(url, "hpsearch" if study_name is None else f"hpsearch:{study_name}", what)
    return NoLock()
