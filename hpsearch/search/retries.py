"""What becomes of a trial that did not finish: a lost worker's trial failed, saying why, and a failed trial's copy
queued, so that the study still reaches its total and the copy resumes from the trial's checkpoint."""

from __future__ import annotations

import time

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.storage import LockWaitExpired, NoLock, quiet_experimental
from hpsearch.storage.optuna_private import stale_trial_ids, storage_of

MAX_RETRIES = 3


def queue_retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a copy of a failed trial: same parameters, the epochs it reported, at most MAX_RETRIES times.

    Optuna's RetryHeartbeatStaleTrialCallback queues it, given the trial as a copy keeps it (record.retried): its
    system attributes chain the attempts, for Optuna's retry helpers and the checkpoints (objective.py). Also the
    storage's callback for the lost trials Optuna fails itself (opening.open_storage's on_lost).
    """
    with quiet_experimental():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)
    retry(study, record.retried(trial))


def fail_lost_trials(study: optuna.Study) -> int:
    """Fail the running trials whose worker stopped sending heartbeats, saying why, and queue their copies.

    Optuna's fail_stale_trials does this without a reason: a failed trial takes no more attributes,
    so the reason and the epochs reached are written first (with the storage calls it uses itself).
    Returns how many trials it failed. Call it under the study lock, where trials are counted.
    """
    storage = storage_of(study)
    failed = 0
    for trial_id in stale_trial_ids(study):
        worker = record.worker(storage.get_trial(trial_id)) or "its worker"
        failed += fail_lost(study, trial_id, f"no heartbeat from {worker} for over "
                                             f"{2 * storage.get_heartbeat_interval()} s (killed, or its machine went away)")
    return failed


def fail_lost(study: optuna.Study, trial_id: int, why: str) -> bool:
    """Fail a running trial whose worker is gone, with the reason "worker lost: WHY" and the epochs it reported,
    and queue its copy; whether it failed it (its worker may have ended it after all). Under the study lock."""
    storage = storage_of(study)
    trial = storage.get_trial(trial_id)
    try:
        record.lost(storage, trial_id, reason=f"worker lost: {why}", epochs_trained=max(trial.intermediate_values, default=0))
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    queue_retry(study, storage.get_trial(trial_id))
    return True


class LostTrialSweep:
    """A living worker's look, at its trial's epoch ends, for trials whose worker went silent: a lone worker on
    another machine killed outright, which nothing but its heartbeat shows. At most once a heartbeat interval, one
    query; a lost trial is failed and its copy queued then, two heartbeat intervals after its worker's last (the
    grace period), so that the study shows it lost and the copy runs on the first worker free, rather than when a
    worker next ends a trial. Under the study lock, waited for briefly: one held longer leaves it to the next look."""

    def __init__(self, study: optuna.Study, lock: NoLock, heartbeat: int):
        self.study, self.lock, self.heartbeat = study, lock, heartbeat
        self.looked = time.monotonic()

    def __call__(self) -> int:
        """How many lost trials this look failed."""
        if time.monotonic() - self.looked < self.heartbeat:
            return 0
        self.looked = time.monotonic()
        if not stale_trial_ids(self.study):
            return 0
        try:
            self.lock.acquire(deadline=time.monotonic())
        except LockWaitExpired:
            return 0
        try:
            return fail_lost_trials(self.study)
        finally:
            self.lock.release()
