"""How Ctrl-C (SIGINT) and SIGTERM (SLURM, Kubernetes, `timeout`) stop a command: one path,
KeyboardInterrupt or its subclass errors.Terminated, raised only where raising is safe.

Raising is not safe inside the database layer. An exception raised in the middle of a query leaves
a half-read SQLite cursor holding its lock, alive in the traceback, so every other process on the
storage waits for it (longer than a run's workers get to record their trials), and it leaves the
SQLAlchemy session that ran the query unusable. There the handler puts the signal off: it asks for it
again REDELIVER_S later, by which time the query has ended.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from hpsearch.errors import Terminated

# hpsearch.storage.rows and .optuna_private: the trial reads of hpsearch's own storage and cache, in an open session
DATABASE_LAYER = ("sqlalchemy", "optuna.storages", "hpsearch.storage.rows", "hpsearch.storage.optuna_private",
                  "sqlite3", "psycopg2", "psycopg", "pymysql")
REDELIVER_S = 0.05
RAISING_S = 0.5  # how long a raised interrupt may take to reach the clean-up that holds signals (hold_signals)


class _Redelivery:
    """A put-off signal, sent again `delay` seconds later. `sent` turns true before the signal goes out, so a
    handler that runs on the redelivered signal (or a block that ends meanwhile) never mistakes it for one
    still to come: a timer thread stays alive a while after sending, longer on a loaded machine."""

    def __init__(self, signum: int, delay: float = REDELIVER_S):
        self.sent = False
        self.timer = threading.Timer(delay, self._send, (signum,))
        self.timer.daemon = True
        self.timer.start()

    def _send(self, signum: int) -> None:
        self.sent = True
        os.kill(os.getpid(), signum)

    @property
    def pending(self) -> bool:
        return not self.sent and self.timer.is_alive()


_put_off: dict[int, _Redelivery] = {}  # signal number: its redelivery
_last_raised = -math.inf  # when raise_on_signal last raised (time.monotonic)


def in_database_layer(frame: FrameType | None) -> bool:
    """Whether the main thread was interrupted in a database library's code, or in code it called."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if any(module == package or module.startswith(package + ".") for package in DATABASE_LAYER):
            return True
        frame = frame.f_back
    return False


def raise_on_signal(signum: int, frame: FrameType | None) -> None:
    """The CLI's handler for SIGINT and SIGTERM: Ctrl-C's path for both, outside the database layer.

    Python may run it inside a __del__ or a weakref callback, which swallows the exception: the next
    signal must then raise again, so nothing is ignored until the clean-up that the exception starts
    has really begun (hold_signals). A signal that comes while the last interrupt is still on its way there
    (RAISING_S) is put off until then: Python runs a handler at its next check, which may be the clean-up's
    first call, and raised there the second interrupt skipped the clean-up (a worker under SLURM hears
    SIGTERM twice within milliseconds, from SLURM and from its batch script). Once signals are held it is
    dropped; if the first interrupt was swallowed, it raises when it comes back."""
    global _last_raised
    settling = _last_raised + RAISING_S - time.monotonic()
    if in_database_layer(frame) or settling > 0:
        if signum not in _put_off or not _put_off[signum].pending:
            _put_off[signum] = _Redelivery(signum, max(REDELIVER_S, settling))
        return
    _last_raised = time.monotonic()
    raise interrupt_for(signum)


def interrupt_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def hold_signals() -> None:
    """A run is recording its interrupted trial and queueing its copy: a second SIGINT or SIGTERM (a
    worker hears one from its process group and another from its parent) must not cut that short.
    Only the CLI's own handler is set aside (raising_on_signals restores it), never a library caller's."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is raise_on_signal:
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def raising_on_signals() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise (raise_on_signal); afterwards the previous handlers
    are back. A signal still put off when the block ends is raised there, not lost and not delivered
    to the handler put back. SIGINT stays ignored where it was (a job started with & by a script). The block
    starts with no interrupt on its way (raise_on_signal)."""
    global _last_raised
    _last_raised = -math.inf
    handled = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) != signal.SIG_IGN]
    previous = {sig: signal.signal(sig, raise_on_signal) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pending = [signum for signum, redelivery in _put_off.items() if redelivery.pending]
        for redelivery in _put_off.values():
            redelivery.timer.cancel()
        _put_off.clear()
    if pending:
        raise interrupt_for(pending[0])
