"""What a study's runs record of themselves, and a stop request (`hpsearch stop`; read in the StudyRecord): read and
written by the storage and the study's id, so that `status` and `stop` need not load the study's trials.

A run's record is a study system attribute (RUN_RECORD + its id), hpsearch's bookkeeping that the dashboard does
not list; a stop request is a study user attribute (STUDY_STOP), shown with the study.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpsearch.record.keys import FAILURE, RUN_RECORD, STUDY_STOP

if TYPE_CHECKING:
    import optuna


def runs_recorded(storage: optuna.storages.BaseStorage, study_id: int) -> dict[str, dict[str, Any]]:
    """What each run recorded of itself (record_run), by run id."""
    return {key.removeprefix(RUN_RECORD): value for key, value in storage.get_study_system_attrs(study_id).items()
            if key.startswith(RUN_RECORD)}


def record_run(storage: optuna.storages.BaseStorage, study_id: int, run_id: str, told: dict[str, Any],
               now: str) -> None:
    """Record what run `run_id` was told (its goal, stop rules, heartbeat, SLURM job), merged into what it recorded
    before, the time it first started (`now` the first time) kept: every worker and task of a run records it."""
    key = RUN_RECORD + run_id
    before = storage.get_study_system_attrs(study_id).get(key) or {}
    if (merged := {**before, **told, "started": before.get("started") or now}) != before:
        storage.set_study_system_attr(study_id, key, merged)


def request_stop(storage: optuna.storages.BaseStorage, study_id: int, request: dict[str, Any]) -> None:
    storage.set_study_user_attr(study_id, STUDY_STOP, request)


def discarded(storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> None:
    """A queued trial about to be failed by id without running (`hpsearch stop --discard-queued`): why."""
    storage.set_trial_user_attr(trial_id, FAILURE, reason)
