"""The record: the one door to what hpsearch stores on Optuna's trials and studies.

Outside this package (and the storage adapter) no module reads or writes Optuna's user or system attributes:
it calls the record's typed readers and writers (tests/test_record_door.py keeps it so).

  keys.py     the name of every attribute, spelled once
  recipe.py   a trial's recipe, TrialRecord: stored, exported, in every weights header
  trial.py    what a trial stores as it runs (written by the objective, a run, the weight keeper) and its Outcome
  study.py    what a study stores: what it was made from, what its runs held (StudyRecord)
  confirm.py  a confirmation's seeds and their results (SeedResult), and the claims of the workers sharing them
  runs.py     what a study's runs record of themselves, and a stop request (`hpsearch stop`)
"""

from hpsearch.record.confirm import Confirmation, SeedResult, claims, set_claims, store_confirmation
from hpsearch.record.recipe import Init, TrialRecord
from hpsearch.record.runs import discarded, record_run, request_stop, runs_recorded
from hpsearch.record.study import (
    StudyRecord,
    accepted_changes,
    copy_to,
    held_limits,
    made_with,
    ran_under,
    study_made,
    stored_study_record,
    study_record,
)
from hpsearch.record.trial import (
    BRIEF_SYSTEM_KEYS,
    BRIEF_USER_KEYS,
    Outcome,
    Provenance,
    baseline,
    built,
    config,
    confirmation,
    copy_of,
    curve_so_far,
    ended,
    failed,
    first_attempt,
    input_shape,
    joined,
    last_attempt,
    lost,
    measured,
    optuna_state,
    outcome,
    priced,
    provenance,
    pruned,
    pruner_state,
    pruner_wrote,
    queue_baseline,
    queued_params,
    stored_recipe,
    stopped_by_request,
    resumed,
    resumed_from,
    retried,
    retried_numbers,
    retry_history,
    run_id,
    started,
    stand_in,
    stored_curve,
    stored_first_attempt,
    trained,
    warm_start,
    warm_start_copy,
    weights_artifact,
    weights_kept,
    weights_not_kept,
    with_confirmation,
    worker,
)

__all__ = [
    "BRIEF_SYSTEM_KEYS", "BRIEF_USER_KEYS", "discarded", "last_attempt", "record_run", "request_stop", "resumed_from",
    "runs_recorded", "stopped_by_request", "stored_study_record",
    "Confirmation", "Init", "Outcome", "Provenance", "SeedResult", "StudyRecord", "TrialRecord", "accepted_changes",
    "baseline", "built", "claims", "config", "confirmation", "copy_of", "copy_to", "curve_so_far", "ended", "failed",
    "first_attempt", "held_limits", "input_shape", "joined", "lost", "made_with", "measured", "optuna_state",
    "outcome", "priced", "provenance", "pruned", "pruner_state", "pruner_wrote", "queue_baseline", "queued_params",
    "ran_under", "resumed", "retried", "retried_numbers", "retry_history", "run_id", "set_claims", "stand_in", "started",
    "store_confirmation", "stored_curve", "stored_first_attempt", "stored_recipe", "study_made", "study_record", "trained", "warm_start",
    "warm_start_copy", "weights_artifact", "weights_kept", "weights_not_kept", "with_confirmation", "worker",
]
