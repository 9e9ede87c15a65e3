"""How a command stops: Ctrl-C (SIGINT) or SIGTERM (SLURM, Kubernetes, `timeout`) asks for a stop, and the work
honours it at its next safe point, where nothing is left half done: between training steps (training/train.py),
between decoded images (training/imagefolder.py), between trials and between the tries of a held lock
(search/run.py, storage.SharedLock), between a parent's looks at its workers (search/workers.py).

There the stop is raised, once, as KeyboardInterrupt, or for SIGTERM as its subclass errors.Terminated: one path
records the running trial as failed with its reason and queues its copy, and the clean-up it starts runs to its
end. No database call is ever cut short: a query stopped midway leaves its SQLite cursor, and the lock with it,
alive in the traceback while the process records its trial, and the other workers wait on it.

A second Ctrl-C stops at once, as Python's own handler would. A repeated SIGTERM is the same request: a SLURM
task hears it twice within milliseconds (from SLURM and from its batch script), and a worker may hear a stop both
from the terminal or the scheduler and from its parent.

Work that touches no database and has no safe points of its own (a torchvision download) runs inside anywhere():
there a stop is raised where the program is, as Python's own Ctrl-C would.

Without the handler (hpsearch used as a library) nothing asks for a stop unless the caller does (request): a
check then costs a function call that reads one variable.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from hpsearch.errors import Terminated

SAID = {signal.SIGINT: "stopping after the current step; Ctrl-C again to stop at once",
        signal.SIGTERM: "SIGTERM: stopping after the current step"}

_requested: int | None = None  # the signal that asked for the stop
_raised = False  # whether a safe point has raised it
_handling = False  # whether on_signals' block is running: there one stop is asked for, and raised, once
_anywhere = False  # whether anywhere()'s block is running


def request(signum: int = signal.SIGINT) -> None:
    """Ask for a stop at the next safe point, as Ctrl-C (SIGINT) or SIGTERM would: what the handler does, and what
    a library caller's own handler or thread may do. While a stop is on its way, or inside on_signals' block once
    one was raised (its clean-up is running), a request adds nothing."""
    global _requested, _raised
    if _requested is None or (_raised and not _handling):
        _requested, _raised = signum, False


def check() -> None:
    """A safe point: raise the stop asked for, if it has not been raised yet."""
    global _raised
    if _requested is None or _raised:
        return
    _raised = True
    raise _interrupt(_requested)


def _interrupt(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _on_signal(signum: int, frame) -> None:
    """The handler: the first signal asks for a stop and says so (inside anywhere(), raises it); a second Ctrl-C
    raises where the program is."""
    global _raised
    if _requested is None:
        request(signum)
        if _anywhere:
            check()
        with contextlib.suppress(OSError):  # a raw write: the program may be inside a write to sys.stderr
            os.write(2, f"{SAID[signum]}\n".encode())
    elif signum == signal.SIGINT:
        _raised = True  # the stop asked for goes with it: a clean-up's own checks raise nothing more
        raise KeyboardInterrupt


@contextlib.contextmanager
def anywhere() -> Iterator[None]:
    """While the block runs, a stop asked for is raised where the program is, not at a safe point: for work that
    touches no database and checks nothing itself (a download). One asked for before the block is raised as it
    begins."""
    global _anywhere
    check()
    before, _anywhere = _anywhere, True
    try:
        yield
    finally:
        _anywhere = before


@contextlib.contextmanager
def on_signals() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM ask for a stop (_on_signal); afterwards the previous handlers are
    back, and a stop asked for that no safe point raised is raised where the block ends, not lost. SIGINT stays
    ignored where it was (a job started with & by a script). Each block starts with no stop asked for."""
    global _requested, _raised, _handling
    _requested, _raised, _handling = None, False, True
    handled = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) != signal.SIG_IGN]
    previous = {sig: signal.signal(sig, _on_signal) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pending = None if _raised else _requested
        _requested, _raised, _handling = None, False, False
    if pending is not None:
        raise _interrupt(pending)
