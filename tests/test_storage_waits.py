"""Waits on a storage are bounded and said: a PostgreSQL server that never answers is one line within seconds,
and a study lock held by another session is named while a worker waits for it, given up at the run's timeout,
and no obstacle to Ctrl-C or SIGTERM. Real servers, real lock holders, real `hpsearch run` processes."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import queue
import signal
import socket
import threading
import time
import uuid

import psycopg
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.errors import StorageError
from hpsearch.paths import slug
from hpsearch.search.run import RunOptions, run
from hpsearch.storage import (
    CONNECT_TIMEOUT_S,
    LOCK_BRIEF_S,
    LockWaitExpired,
    advisory_key,
    engine_options,
    mask,
    open_storage,
    shared_lock,
    side_folder,
)
from hpsearch.studyfile.schema import load_spec
from tests.helpers import POSTGRES, hpsearch, invoke, outcome

STORAGES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason="set HPSEARCH_TEST_POSTGRES to a PostgreSQL URL (.ci/run starts a server and sets it)"))]


@pytest.fixture
def silent_server():
    """The address of a TCP server that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in accepted:
        connection.close()


@pytest.mark.parametrize("command", [["run", "--study", "digits-quick"], ["best", "--study", "tiny"]])
def test_a_server_that_accepts_and_never_answers_is_one_masked_line_within_seconds(silent_server, command):
    """psycopg waits 130 s for a server's first answer (131-137 s before hpsearch said anything)."""
    url = f"postgresql://bob:s3cret@{silent_server}/hp"
    started = time.monotonic()
    code, out, err = outcome(invoke(*command, "--storage", url))
    waited = time.monotonic() - started
    assert code == 2 and "Traceback" not in err and "s3cret" not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: cannot open storage {mask(url)}: connection timeout expired: no PostgreSQL "
                           "server answered in time: check the host and port"), line
    assert "?connect_timeout=SECONDS in the URL" in line
    assert CONNECT_TIMEOUT_S <= waited < CONNECT_TIMEOUT_S + 15


@pytest.mark.parametrize("query, environment, seconds", [("", {}, CONNECT_TIMEOUT_S), ("?connect_timeout=2", {}, 2),
                                                         ("", {"PGCONNECT_TIMEOUT": "3"}, 3)],
                         ids=["default", "url", "environment"])
def test_the_connect_timeout_is_hpsearch_s_unless_the_url_or_libpq_s_variable_says(silent_server, monkeypatch, query,
                                                                                      environment, seconds):
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with pytest.raises(StorageError, match="connection timeout expired"):
        open_storage(f"postgresql://bob@{silent_server}/hp{query}")
    # The URL's or the variable's shorter wait is over before hpsearch's default would be.
    assert seconds <= time.monotonic() - started < (seconds + 15 if seconds == CONNECT_TIMEOUT_S else CONNECT_TIMEOUT_S)


@contextlib.contextmanager
def held_elsewhere(url: str, study_name: str):
    """The study lock of `study_name` on `url` held by a session that is not hpsearch's: an flock on the lock file,
    or a psycopg session's advisory lock. Yields the holder as a waiter names it."""
    if url.startswith("sqlite"):
        path = side_folder(url) / "locks" / f"{slug(study_name)}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            yield f"another worker (lock file {path})"
    else:
        with psycopg.connect(POSTGRES, autocommit=True) as session:
            session.execute("SELECT pg_advisory_lock(%s)", (advisory_key(f"hpsearch:{study_name}"),))
            yield f"another worker (PostgreSQL session {session.info.backend_pid})"


@pytest.fixture
def study_on(write_study, tmp_path):
    """study_on(kind, **overrides) -> (storage URL, study file) of a study with a name of its own (one PostgreSQL
    database holds the advisory locks of every test that uses it)."""

    def make(kind: str, **overrides):
        path = write_study(name=f"waits-{uuid.uuid4().hex[:8]}", **overrides)
        return (f"sqlite:///{tmp_path / 'waits.db'}" if kind == "sqlite" else POSTGRES), path

    return make


def read_lines(stream) -> queue.Queue:
    """The lines of `stream` as they come, then "" at its end, read by a thread (a process's stderr, read without
    blocking the test)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def next_line_with(lines: queue.Queue, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while (line := lines.get(timeout=max(0.0, deadline - time.monotonic()))) and text not in line:
        pass
    return line


@pytest.mark.parametrize("kind", STORAGES)
def test_a_worker_waiting_for_a_held_study_lock_says_so_and_stops_at_once_on_sigterm(study_on, kind):
    """Before, the wait was silent, and on PostgreSQL SIGTERM took effect only once the lock was freed (it waited
    inside pg_advisory_lock, a database call, where no stop is taken)."""
    url, path = study_on(kind)
    name = load_spec(path).name
    with held_elsewhere(url, name) as holder:
        process = hpsearch("run", "--study", str(path), "--storage", url, "--device", "cpu")
        try:
            lines = read_lines(process.stderr)
            waiting = next_line_with(lines, "waiting for")
            assert waiting.strip() == f"waiting for the study lock of study {name} on {mask(url)}, held by {holder}"
            time.sleep(LOCK_BRIEF_S)  # said once, not at every try
            process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            code = process.wait(timeout=30)
            assert time.monotonic() - stopping < 10  # at once: the rest is the interpreter exiting (torch loaded)
        finally:
            process.kill()
    rest = list(iter(lambda: lines.get(timeout=5), ""))
    assert code == 143, rest
    assert [line for line in rest if "waiting" in line] == []
    assert rest[-1].strip() == "terminated (SIGTERM): run the same command again to resume the study", rest
    assert "Traceback" not in "".join(rest)
    if kind == "postgresql":
        assert sqlalchemy.engine.make_url(POSTGRES).password not in waiting + "".join(rest)


@pytest.mark.parametrize("kind", STORAGES)
def test_a_study_lock_held_past_the_run_s_timeout_ends_the_run_in_one_line(study_on, kind):
    url, path = study_on(kind)
    name = load_spec(path).name
    holding = contextlib.ExitStack()
    holder = holding.enter_context(held_elsewhere(url, name))
    freed = threading.Timer(60, holding.close)  # without a bounded wait the run would hang: free it, to fail
    freed.start()
    try:
        started = time.monotonic()
        code, _, err = outcome(invoke("run", "--study", str(path), "--storage", url, "--device", "cpu",
                                      "--timeout", "3"))
        waited = time.monotonic() - started
    finally:
        freed.cancel()
        holding.close()
    assert code == 2 and "Traceback" not in err and waited < 30, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: gave up after 3 s waiting for the study lock of study {name} on {mask(url)}: "
                           f"{holder} held it all that time; if no other worker is running, a stuck "), line
    assert ("`fuser " if kind == "sqlite" else "SELECT pg_terminate_backend(") in line


@pytest.mark.parametrize("kind", STORAGES)
def test_a_run_whose_timeout_comes_while_another_holds_the_lock_stops_there_with_its_trials(study_on, kind, caplog):
    """The lock is taken by another session as the run's first trial ends: the run does not wait past its timeout
    for the next one; it stops with the trial it ran, saying why."""
    url, path = study_on(kind, budget={"epochs": 1, "trials": 3})
    spec = load_spec(path)
    holding = contextlib.ExitStack()
    freed = threading.Timer(60, holding.close)  # without a bounded wait the run would hang: free it, to fail
    freed.start()
    try:
        with caplog.at_level(logging.WARNING, logger="hpsearch"):
            study = run(spec, url, RunOptions(device="cpu", timeout=3),
                        callbacks=[lambda study, trial: holding.enter_context(held_elsewhere(url, spec.name))])
    finally:
        freed.cancel()
        holding.close()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    (said,) = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert said.startswith("gave up after") and f"waiting for the study lock of study {spec.name}" in said


@pytest.mark.parametrize("kind", STORAGES)
def test_a_lock_wait_takes_the_lock_once_freed_and_gives_up_only_after_a_brief_wait(study_on, kind):
    url, path = study_on(kind)
    name = load_spec(path).name
    lock = shared_lock(url, name)
    try:
        with held_elsewhere(url, name):
            started = time.monotonic()
            with pytest.raises(LockWaitExpired):
                lock.acquire(deadline=started)  # a deadline already past: still a brief wait, for a brief holder
            assert time.monotonic() - started >= LOCK_BRIEF_S
        holding = contextlib.ExitStack()
        holding.enter_context(held_elsewhere(url, name))
        threading.Timer(0.5, holding.close).start()
        lock.acquire(deadline=time.monotonic() + 30)
        assert lock.held
    finally:
        lock.close()


def test_only_libpq_drivers_get_hpsearch_s_connect_timeout_and_only_where_none_is_given(monkeypatch):
    """pg8000 and asyncpg name their timeout otherwise: given connect_timeout, they would fail to connect at all."""
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    ours = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    assert engine_options("postgresql://u@db/hp") == engine_options("postgresql+psycopg2://u@db/hp") == ours
    assert engine_options("postgresql+pg8000://u@db/hp") == engine_options("postgresql://u@db/hp?connect_timeout=9") == {}
