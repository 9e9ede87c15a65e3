"""Storage URLs: which one to use, how to open it, how to print it without its password, the locks
its processes share, and what becomes of a trial whose worker died."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import filelock
import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.defaults import DEFAULT_HEARTBEAT_S, DEFAULT_STORAGE
from hpsearch.errors import StorageError
from hpsearch.paths import slug
from hpsearch.trialrows import TrialCache, TrialRowsStorage

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 60  # several local workers may write at once: wait for the lock, do not fail
CONNECT_TIMEOUT_S = 5  # a PostgreSQL server silent this long is reported, not waited for (psycopg's own: 130 s)


def storage_url(given: str | None) -> str:
    """--storage, else $HPSEARCH_STORAGE, else the SQLite file hpsearch.db here; refused before anything is
    made where no study could be kept (see refuse_unusable)."""
    url = given or os.environ.get("HPSEARCH_STORAGE") or DEFAULT_STORAGE
    refuse_unusable(url)
    return url


_SECRET_QUERY = re.compile(r"(^|&)((?:ssl)?password)=([^&]*)", re.IGNORECASE)  # libpq's password parameters


def _userinfo(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme://, user, password or None, host and path, ?query) of a URL with a user part, else None.

    Split by hand rather than by a URL parser: a password may hold an unescaped `:`, `/` or `@`, and a parser
    takes the text after the first `@` for the host (then prints it in its errors). The user part ends at the
    last `@` before the query.
    """
    base, question, query = url.partition("?")
    scheme, sep, rest = base.partition("://")
    if not sep or "@" not in rest or rest.startswith("/"):
        return None
    userinfo, host = rest.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://", user, password if colon else None, host, question + query


def secrets(url: str) -> list[str]:
    """Every password in `url`, as written and URL-decoded: what no message may show."""
    parts = _userinfo(url)
    found = [parts[2]] if parts and parts[2] else []
    found += [m.group(3) for m in _SECRET_QUERY.finditer(url.partition("?")[2]) if m.group(3)]
    return [s for secret in found for s in dict.fromkeys((secret, unquote(secret)))]


def mask(url: str) -> str:
    """The URL with every password replaced by ***, fit for messages and logs."""
    if parts := _userinfo(url):
        scheme, user, password, host, query = parts
        url = f"{scheme}{user}{':***' if password is not None else ''}@{host}{query}"
    base, question, query = url.partition("?")
    return base + question + _SECRET_QUERY.sub(r"\1\2=***", query)


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error, say) with every password of `url` replaced by ***."""
    for secret in sorted(secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


MAX_RETRIES = 3


def sqlite_file(url: str) -> Path | None:
    """The database file of an `sqlite:///` URL, or None for other storages (and in-memory SQLite)."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def side_folder(url: str) -> Path:
    """The one folder of a storage's side files: x-files/ beside an SQLite file x.db, else ./hpsearch-files
    (for a server storage each kind may live elsewhere, see folder_beside)."""
    db = sqlite_file(url)
    return db.with_name(f"{db.stem}-files") if db is not None else Path("hpsearch-files")


def folder_beside(url: str, kind: str, env_var: str | None = None) -> Path:
    """The folder of one kind of this storage's side files (locks, checkpoints, artifacts, logs):
    side_folder(url)/KIND.

    For a server storage every machine must see the same folder to share it, so $ENV_VAR names it where
    set. Earlier versions kept each kind in a folder of its own, x-KIND/ beside x.db (else ./hpsearch-KIND):
    where that folder exists it is still used, so the checkpoints and weights of studies run then are found.
    """
    if env_var and sqlite_file(url) is None and os.environ.get(env_var):
        return Path(os.environ[env_var])
    db = sqlite_file(url)
    legacy = db.with_name(f"{db.stem}-{kind}") if db is not None else Path(f"hpsearch-{kind}")
    return legacy if legacy.is_dir() else side_folder(url) / kind


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna marks heartbeats and their retries "experimental" (since 2.8); they are what hpsearch needs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def driver_url(url: str) -> str:
    """postgresql:// spelled with the psycopg 3 driver hpsearch installs (SQLAlchemy < 2.1 would pick psycopg2)."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql:", "postgresql+"))


LIBPQ_DRIVERS = ("postgresql+psycopg", "postgresql+psycopg2")  # those that take libpq's connect_timeout


def engine_options(url: str) -> dict:
    """create_engine's keywords for every connection hpsearch makes to `url`.

    SQLite waits SQLITE_BUSY_TIMEOUT_S for another writer's lock. PostgreSQL gives up after CONNECT_TIMEOUT_S on
    a server that does not answer (a wrong port, a host that drops packets, a server that accepts and stays
    silent), instead of psycopg's 130 s; the URL's own connect_timeout, or libpq's $PGCONNECT_TIMEOUT, wins.
    Other drivers (pg8000, asyncpg) name their timeouts otherwise, and get none from hpsearch.
    """
    if sqlite_file(url) is not None:
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if (driver_url(url).partition("://")[0] in LIBPQ_DRIVERS and "PGCONNECT_TIMEOUT" not in os.environ
            and "connect_timeout" not in parse_qs(url.partition("?")[2])):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


LOCK_POLL_S = (0.005, 0.1)  # the first and the longest pause between two tries of a held lock (doubling)
LOCK_BRIEF_S = 2.0  # a worker holds a study lock for milliseconds: a longer wait is said, and may reach a deadline
LOCK_SAY_EVERY_S = 60.0  # a wait is said again this often while it lasts
STOPPING_LOCK_WAIT_S = 10.0  # a process stopping at Ctrl-C or SIGTERM (signals held) waits this long to tidy up


class LockWaitExpired(StorageError):
    """A shared lock still held by another worker when the waiter's deadline came."""


class NoLock:
    def acquire(self, deadline: float | None = None) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class SharedLock(NoLock):
    """A lock every process of a storage sees (shared_lock), taken by trying it between short pauses: a wait for a
    lock held elsewhere is said on stderr, gives up at the waiter's deadline, and stops at Ctrl-C or SIGTERM
    (the pauses are outside database calls, where signals.py raises them). Acquiring a held lock or releasing a
    free one does nothing."""

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


def queue_retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a copy of a failed trial: same parameters, the epochs it reported, at most MAX_RETRIES times.

    Optuna's RetryHeartbeatStaleTrialCallback queues it, given the trial as a copy keeps it (record.retried): its
    system attributes chain the attempts, for Optuna's retry helpers and the checkpoints (objective.py).
    """
    with quiet_experimental():
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES,
                                                                 inherit_intermediate_values=True)
    retry(study, record.retried(trial))


def fail_lost_trials(study: optuna.Study) -> int:
    """Fail the running trials whose worker stopped sending heartbeats, saying why, and queue their copies.

    Optuna's fail_stale_trials does this without a reason: a failed trial takes no more attributes,
    so the reason and the epochs reached are written first (with the storage calls it uses itself).
    Returns how many trials it failed. Call it under the study lock, where trials are counted.
    """
    storage = study._storage  # Optuna's cache in front of the RDBStorage that open_storage made
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if interval is None:
        return 0
    failed = 0
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        trial = storage.get_trial(trial_id)
        try:
            record.lost(storage, trial_id, reason=f"worker lost: no heartbeat from {record.worker(trial) or 'its worker'} "
                        f"for over {2 * interval} s (killed, or its machine went away)",
                        epochs_trained=max(trial.intermediate_values, default=0))
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # its worker ended it after all
        failed += 1
        queue_retry(study, storage.get_trial(trial_id))
    return failed


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """One trial of the study, read alone (study.trials reads them all)."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """A study's system attributes (Optuna's Study has no public reader of them)."""
    return study._storage.get_study_system_attrs(study._study_id)


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def catch_up(view: optuna.Study, shown: FrozenTrial, now: FrozenTrial) -> None:
    """Write onto `shown`, an unfinished trial of the in-memory study `view`, what differs in `now`: its intermediate
    values, system attributes and state (a copy kept in step without rebuilding it: search/curvepruning.py)."""
    storage, trial_id = view._storage, shown._trial_id
    for step, value in now.intermediate_values.items():
        if shown.intermediate_values.get(step) != value:
            storage.set_trial_intermediate_value(trial_id, step, value)
    for key, value in now.system_attrs.items():
        if shown.system_attrs.get(key) != value:
            storage.set_trial_system_attr(trial_id, key, value)
    if now.state != shown.state:
        if now.state == TrialState.RUNNING:
            storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        else:
            storage.set_trial_state_values(trial_id, now.state, now.values)


def open_storage(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT_S,
                 reading: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, or StorageError with one line saying what to fix.

    Running trials send a heartbeat; one whose worker died (SIGKILL, a lost machine) is marked
    FAIL once its heartbeat is older than the grace period, and a copy with the same parameters
    is queued so the study still reaches its total (see fail_lost_trials).
    """
    refuse_unusable(url)
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
            return TrialRowsStorage(
                driver_url(url), engine_kwargs=engine_options(url), heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat, heartbeat_stale_trial_callback=queue_retry)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(f"cannot open storage {mask(url)}: {driver_reason(exc, url)}") from None
    finally:
        lock.close()


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


def refuse_unusable(url: str) -> None:
    """StorageError for a URL no study should be stored at: in-memory SQLite (no other worker could share it
    and nothing would outlive the run) and a password holding an unescaped `@` (read as part of the host)."""
    if url.startswith("sqlite:") and (url.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://")
                                      or url.endswith(":memory:") or "mode=memory" in url):
        raise StorageError(f"{url}: an in-memory SQLite storage vanishes when the run ends and no other worker can "
                           "share it: give a file (sqlite:///hpsearch.db) or a server")
    parts = _userinfo(url)
    if parts and parts[2] and "@" in parts[2]:
        raise StorageError(f"the password in {mask(url)} holds an unescaped @: write it as %40 (URL-encode "
                           "the password)")


def cached(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """Optuna's cache in front of an RDB storage, made once to be shared by every Study a process opens on it.

    Each Study made on a bare RDBStorage puts a cache of its own in front of it, and each cache reads every
    trial of the study once: a run that checks the study (check_existing) and then opens it would read twice.
    Each later read takes the new and the unfinished trials from the storage again, finished ones from memory.
    """
    if isinstance(storage, optuna.storages.RDBStorage):
        return TrialCache(storage)
    return optuna.storages.get_storage(storage)


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


def is_new_sqlite(url: str) -> bool:
    """Whether `url` is an SQLite file that does not exist yet (open_storage would create it)."""
    path = sqlite_file(url)
    return path is not None and not path.exists()


def open_existing(url: str) -> optuna.storages.BaseStorage:
    """open_storage for readers: an SQLite file that does not exist is refused instead of created, so
    `best`, `export`, `report` and `dashboard` on a wrong --storage write nothing. An empty file is no storage
    either: opened, it would get Optuna's tables."""
    if is_new_sqlite(url) or (sqlite_file(url) is not None and sqlite_file(url).stat().st_size == 0):
        raise StorageError(f"no storage {sqlite_file(url)}: nothing has run there yet (`hpsearch run` creates it; "
                           "--storage or $HPSEARCH_STORAGE chooses another)")
    return open_storage(url, reading=True)
