"""The errors hpsearch expects and turns into one line on the command line (exit status 2).

Anything else is a bug and is allowed to surface with its traceback.
"""


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


class ClusterError(HpsearchError):
    """A SLURM submission that could not work across a cluster's nodes, or that sbatch refused."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and `timeout` send before killing), raised where Ctrl-C's
    KeyboardInterrupt would be, so that one path records the running trial as failed and queues its copy."""

    reason = "terminated (SIGTERM)"


def interruption(exc: KeyboardInterrupt) -> str:
    """What stopped the run, for the trial's `failure` and the last line on the console."""
    return exc.reason if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"


MAX_SHOWN_ERROR = 200  # characters of another program's exception in one of hpsearch's lines


def one_line(exc: BaseException) -> str:
    """'ValueError: depth must be positive': an exception raised by code not hpsearch's (a user's builder, a
    plugin) in one line, cut short."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    words = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return words if len(words) <= MAX_SHOWN_ERROR else words[:MAX_SHOWN_ERROR - 3] + "..."
