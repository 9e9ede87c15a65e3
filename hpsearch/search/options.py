"""A run's options, and the command-line words that hand them to another process.

One set for every way a study runs: `run` in this process, the `worker` processes of `run --workers`, and
the SLURM tasks of `submit`, so that each stops by the same rules (a budget, a total to reach, a timeout,
the target). Torch-free: `submit` builds its tasks' command lines from it without loading torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.defaults import DEFAULT_HEARTBEAT_S, DEFAULT_KEEP

if TYPE_CHECKING:
    from hpsearch.studyfile.types import StudySpec

# When neither --mlflow URI nor $MLFLOW_TRACKING_URI says: MLflow 3's own default, an SQLite file here (MLflow
# 3.17 refuses a ./mlruns folder store unless MLFLOW_ALLOW_FILE_STORE=true). Artifacts go to ./mlruns.
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"


def tracking_uri(given: str) -> str:
    """--mlflow's URI: the one given, else $MLFLOW_TRACKING_URI, else ./mlflow.db; a relative SQLite file or folder
    made absolute, so that the workers a run starts log to the same one."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).absolute())
    return uri if ":" in uri else Path(uri).absolute().as_uri()


@dataclass(frozen=True)
class RunOptions:
    n_trials: int | None = None  # trials this run adds; None: the study's budget.trials
    until: int | None = None  # instead: run until the study holds this many finished trials
    timeout: float | None = None  # seconds; None: the study's budget.timeout
    device: str = "auto"
    seed: int | None = None
    stop_at_target: bool = True
    data_dir: Path | None = None
    heartbeat: int = DEFAULT_HEARTBEAT_S
    run_id: str | None = None  # shared by the workers of one run (see workers.py); None: a new run
    keep_weights: int = DEFAULT_KEEP  # the best this many completed trials keep their weights (0: none)
    mlflow: str | None = None  # the MLflow tracking URI the run's workers log to (cli.py makes the tracker)
    accept_change: bool = False  # add to a study whose epochs, data or parameters changed (studystore.changes)

    def arguments(self) -> list[str]:
        """These options as `hpsearch run` and `hpsearch worker` take them, those at their default left out; the
        device and the run id are the caller's to add (a worker's slot, a task's GPUs). The MLflow URI and the
        storage URL are never among them: they travel in the environment (workers.worker_environment)."""
        words = []
        if self.until is not None:
            words += ["--until", str(self.until)]
        elif self.n_trials is not None:
            words += ["--n-trials", str(self.n_trials)]
        for flag, value in (("--timeout", self.timeout), ("--seed", self.seed), ("--data-dir", self.data_dir)):
            if value is not None:
                words += [flag, str(value)]
        if self.heartbeat != DEFAULT_HEARTBEAT_S:
            words += ["--heartbeat", str(self.heartbeat)]
        if self.keep_weights != DEFAULT_KEEP:
            words += ["--keep-weights", str(self.keep_weights)]
        if self.mlflow is not None:
            words.append("--mlflow")  # to $MLFLOW_TRACKING_URI
        if not self.stop_at_target:
            words.append("--no-stop-at-target")
        if self.accept_change:
            words.append("--accept-change")
        return words

    def stop_rules(self, spec: StudySpec) -> str:
        """What ends a run of `spec` with these options, in words (`submit` says it of its array)."""
        rules = [f"once the study holds {self.until:,} finished trials (--until)" if self.until is not None else
                 f"after {self.n_trials or spec.budget.trials:,} trials over all its workers (--n-trials)"]
        if timeout := self.timeout or spec.budget.timeout:
            rules.append(f"{timeout:g} s after it started (--timeout)")
        if spec.target is not None and self.stop_at_target:
            rules.append(f"once one of its sampled trials meets the target {spec.describe_target()} "
                         "(--no-stop-at-target searches on)")
        rules.append("at `hpsearch stop`")
        said = ", ".join(rules[:-1]) + " or " + rules[-1]
        if spec.target is not None and not self.stop_at_target:
            said += f"; not at the target {spec.describe_target()} (--no-stop-at-target)"
        return said

    def record(self, spec: StudySpec) -> dict[str, Any]:
        """What a run records of itself in the study (stop.record_run): its goal and what stops it early, read by
        `hpsearch status`, and its id named by `hpsearch stop`."""
        return {"until": self.until, "n_trials": None if self.until is not None else self.n_trials or spec.budget.trials,
                "timeout": self.timeout or spec.budget.timeout,
                "stop_at_target": self.stop_at_target and spec.target is not None, "heartbeat": self.heartbeat}
