"""`hpsearch stop`: a study's runs stopped cleanly from any machine that reaches its storage, and its queued
copies discarded.

The storage is the only channel, as it is between workers. Every run records itself in the study when it
opens it (record_run; `submit` records its array as it submits it, so that a task still pending is covered),
and a stop request names every run recorded by then (StudyRecord.stop_request). Each worker of a named run looks for it
before each trial, and starts none; a running trial looks at its epoch ends (at most every CHECK_S), and stops
there as an interrupted one does: failed with the reason, its checkpoint kept and its copy queued, to resume in
a later run. A run started after the request is not named, and goes on. With discard_queued every queued copy
is failed with the reason "discarded by hpsearch stop" and its checkpoint removed (Optuna deletes no trial),
and the trials the request stops are not queued again. Torch-free: the login node runs it.
"""

from __future__ import annotations

import datetime
import getpass
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsearch import record
from hpsearch.results.status import describe_stop, find_study
from hpsearch.storage import (
    checkpoint_root,
    open_existing,
    optuna_private,
    shared_lock,
    trial_checkpoint,
)

log = logging.getLogger(__name__)

CHECK_S = 5.0  # a running trial asks the storage for a stop request at an epoch end at most this often
DISCARDED = "discarded by hpsearch stop"
STOPPED = "stopped by hpsearch stop"


class StopRequested(Exception):
    """A trial's run was asked to stop (`hpsearch stop`): raised at an epoch end; the trial is recorded as failed
    with this reason, and its copy queued unless the request discards them."""

    def __init__(self, request: dict[str, Any]):
        self.discard = bool(request.get("discard_queued"))
        then = "discarded" if self.discard else "its copy resumes in a later run"
        super().__init__(f"{STOPPED} (by {request.get('by', '?')}); {then}")


def request_for(study: optuna.Study, run_id: str) -> dict[str, Any] | None:
    """The study's stop request, if it names run `run_id`."""
    request = record.study_record(study).stop_request
    return request if request and run_id in request.get("runs", ()) else None


class StopCheck:
    """Whether `hpsearch stop` named this run: asked between trials (requested), and at a trial's epoch ends
    (the call, which raises StopRequested) at most every CHECK_S."""

    def __init__(self, study: optuna.Study, run_id: str):
        self.study, self.run_id = study, run_id
        self.asked = time.monotonic()
        self.said = False

    def requested(self) -> dict[str, Any] | None:
        request = request_for(self.study, self.run_id)
        if request is not None and not self.said:
            log.warning("study %s: %s", self.study.study_name, describe_stop(request))
            self.said = True
        return request

    def __call__(self) -> None:
        if time.monotonic() - self.asked < CHECK_S:
            return
        self.asked = time.monotonic()
        if (request := self.requested()) is not None:
            raise StopRequested(request)


def record_run(storage: optuna.storages.BaseStorage, study_id: int, run_id: str, told: dict[str, Any]) -> None:
    """Record what run `run_id` was told (its goal, stop rules, heartbeat, SLURM job), merged into what it recorded
    before, the time it first started kept: every worker and task of a run records it."""
    record.record_run(storage, study_id, run_id, told, _now())


def record_submitted(storage: optuna.storages.BaseStorage, name: str, run_id: str, told: dict[str, Any]) -> None:
    """Record a SLURM array as `submit` hands it over (record_run), so that a stop request covers its tasks still
    pending. A study not made yet has nothing to stop: its tasks record the array as they start."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return
    record_run(storage, study_id, run_id, told)


@dataclass(frozen=True)
class StopDone:
    """What `hpsearch stop` did."""

    request: dict[str, Any]
    running: list[int]  # the trials running now, which stop at their next epoch end
    discarded: list[int]  # the queued trials discarded


def request_stop(storage_url: str, name: str, *, discard_queued: bool = False) -> StopDone:
    """Ask every run of study `name` recorded so far to stop, under the study lock; with discard_queued, discard
    its queued trials (their checkpoints removed) as well."""
    storage = open_existing(storage_url)
    study_id = find_study(storage, name, storage_url)
    lock = shared_lock(storage_url, name)
    lock.acquire()
    try:
        unfinished = [t for t in storage.trials_in_brief(study_id, (), ()) if not t.state.is_finished()]
        running = [t for t in unfinished if t.state == TrialState.RUNNING]
        runs = set(record.runs_recorded(storage, study_id))
        runs |= {record.run_id(t) for t in running} - {None}
        request = {"by": _who(), "at": _now(), "runs": sorted(runs), "discard_queued": discard_queued}
        record.request_stop(storage, study_id, request)
        discarded = []
        for trial in unfinished if discard_queued else ():
            if trial.state == TrialState.WAITING:
                record.discarded(storage, optuna_private.trial_id(trial), f"{DISCARDED} (by {request['by']})")
                if storage.set_trial_state_values(optuna_private.trial_id(trial), state=TrialState.FAIL):
                    trial_checkpoint(checkpoint_root(storage_url), name,
                                     record.stored_first_attempt(trial)).unlink(missing_ok=True)
                    discarded.append(trial.number)
    finally:
        lock.close()
    return StopDone(request, [t.number for t in running], discarded)


def _who() -> str:
    """user@host, as a stop request records who asked."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
