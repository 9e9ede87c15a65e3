"""The errors hpsearch expects and turns into one line on the command line (exit status 2).

Anything else is a bug and is allowed to surface with its traceback.
"""

import signal


class HpsearchError(Exception):
    """A problem with the user's input or environment, with its fix in the message."""


class SpecError(HpsearchError):
    """A study file that cannot be used: every problem found, one per line."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class DatasetError(HpsearchError):
    """A dataset that is unknown, missing or unreadable."""


class StorageError(HpsearchError):
    """A storage URL that cannot be opened."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and `timeout` send before killing), raised where Ctrl-C's
    KeyboardInterrupt would be, so that one path records the running trial as failed and queues its copy."""

    reason = "terminated (SIGTERM)"


def interruption(exc: KeyboardInterrupt) -> str:
    """What stopped the run, for the trial's `failure` and the last line on the console."""
    return exc.reason if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"


def raise_on_signal(signum, frame) -> None:
    """The CLI's handler for SIGINT and SIGTERM (cli.stops_once): Ctrl-C's path for both.

    It only raises. Python may run it inside a __del__ or a weakref callback, which swallows the
    exception: the next signal must then raise again, so nothing is ignored until the clean-up that
    the exception starts has really begun (hold_signals)."""
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def hold_signals() -> None:
    """A run is recording its interrupted trial and queueing its copy: a second SIGINT or SIGTERM (a
    worker hears one from its process group and another from its parent) must not cut that short.
    Only the CLI's own handler is set aside (cli.stops_once restores it), never a library caller's."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is raise_on_signal:
            signal.signal(sig, signal.SIG_IGN)
