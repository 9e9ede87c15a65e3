"""What a trial stores beside Optuna's own fields: written as it runs, read back as typed values.

The writers take the live trial (optuna.Trial, or a FixedTrial in tests) and are what the objective, a run and the
weight keeper call, in the order a trial lives: started, priced, built, trained or pruned or failed, ended. Each
attribute is one storage commit: Optuna's public API sets a trial's attributes one call at a time, and every such
write goes through _write, so a storage that could set several at once would change one function. A lost trial is
written by id (its worker is gone); a trial made rather than run (a queued baseline, a failed trial's copy, a
warm-start copy, a view's stand-in) is given its attributes here. The readers take a FrozenTrial: small ones for the
filters that run over a whole study (baseline, run_id, warm_start, measured), and outcome() for what a display shows
of one trial. Standard library only at import.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpsearch.record.confirm import Confirmation
from hpsearch.record.keys import (
    BASELINE,
    CONFIG,
    CONFIRM,
    COST,
    CURVE,
    DATASET_SOURCE,
    DEVICE,
    EPOCHS_TRAINED,
    FAILURE,
    FIXED_PARAMS,
    INPUT_SHAPE,
    MEASURES,
    OPTUNA,
    OVER_LIMIT,
    PARAM_COUNT,
    PRUNER_ATTRS,
    RESUMED_FROM_EPOCH,
    RUN,
    SECONDS,
    SLURM,
    STOPPED,
    TEST_ACCURACY,
    TORCH,
    TRAIN_SECONDS,
    TRAINABLE_COUNT,
    VAL_ACCURACY,
    WARM_START,
    WEIGHTS,
    WEIGHTS_NOT_KEPT,
    WORKER,
)
from hpsearch.record.recipe import TrialRecord

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

RETRIED = (BASELINE,)  # what a trial's queued copy keeps of its attributes: what to run, not how it went


def _write(trial: optuna.trial.BaseTrial, attrs: Mapping[str, Any]) -> None:
    """Set each of `attrs` on the live trial."""
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


# Written as a trial runs -------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """Where a worker's trials run, the same for each of them: every trial records it as it starts."""

    device: str
    torch: str
    optuna: str
    dataset_source: str | None
    worker: str  # host:pid, as lost trials and the workers' view name it
    slurm: Mapping[str, int] | None = None  # the SLURM job running the worker; None outside SLURM


def started(trial: optuna.trial.BaseTrial, recipe: TrialRecord, where: Provenance) -> None:
    """A trial starts: its recipe (TrialRecord.trial_attrs) and where it runs."""
    ran = {DEVICE: where.device, TORCH: where.torch, OPTUNA: where.optuna, DATASET_SOURCE: where.dataset_source,
           WORKER: where.worker}
    _write(trial, {**recipe.trial_attrs(), **ran, **({SLURM: dict(where.slurm)} if where.slurm else {})})


def joined(trial: optuna.trial.BaseTrial, run_id: str) -> None:
    """The trial is one of run `run_id`'s (written by the run before its objective starts)."""
    _write(trial, {RUN: run_id})


def priced(trial: optuna.trial.BaseTrial, cost: Mapping[str, Any]) -> None:
    """What the trial costs, as far as it is known (search/cost.py): rewritten as its pace is measured."""
    _write(trial, {COST: dict(cost)})


def resumed(trial: optuna.trial.BaseTrial, from_epoch: int) -> None:
    """The trial resumed an earlier attempt's checkpoint after epoch `from_epoch`."""
    _write(trial, {RESUMED_FROM_EPOCH: from_epoch})


def curve_so_far(trial: optuna.trial.BaseTrial, values: list[float]) -> None:
    """A two-objective trial's validation accuracy after each epoch so far, epoch 1 first (curvepruning)."""
    _write(trial, {CURVE: list(values)})


def pruner_wrote(trial: optuna.trial.BaseTrial, state: Mapping[str, Any]) -> None:
    """What the pruner wrote on its single-objective view of a two-objective trial (curvepruning)."""
    _write(trial, {PRUNER_ATTRS: dict(state)})


def built(trial: optuna.trial.BaseTrial, param_count: int) -> None:
    """The trial's model is built: its parameter count."""
    _write(trial, {PARAM_COUNT: param_count})


def trained(trial: optuna.trial.BaseTrial, *, trainable_count: int, train_seconds: float, val_accuracy: float,
            test_accuracy: float) -> None:
    """The trial trained to its end: what it reached."""
    _write(trial, {TRAINABLE_COUNT: trainable_count, TRAIN_SECONDS: train_seconds, VAL_ACCURACY: val_accuracy,
                   TEST_ACCURACY: test_accuracy})


def pruned(trial: optuna.trial.BaseTrial, *, train_seconds: float, over_limit: str | None = None,
           stopped: str | None = None) -> None:
    """The trial ends early as pruned: by the pruner, over a limit (why), or stopped by hpsearch (why)."""
    why = {**({OVER_LIMIT: over_limit} if over_limit else {}), **({STOPPED: stopped} if stopped else {})}
    _write(trial, {**why, TRAIN_SECONDS: train_seconds})


def failed(trial: optuna.trial.BaseTrial, reason: str) -> None:
    """Why the trial failed (or was interrupted): Optuna records its state, not why."""
    _write(trial, {FAILURE: reason})


def ended(trial: optuna.trial.BaseTrial, *, epochs_trained: int, seconds: float) -> None:
    """However the trial ended: the epochs it trained and its wall time."""
    _write(trial, {EPOCHS_TRAINED: epochs_trained, SECONDS: seconds})


def weights_kept(trial: optuna.trial.BaseTrial, artifact_id: str) -> None:
    _write(trial, {WEIGHTS: artifact_id})


def weights_not_kept(trial: optuna.trial.BaseTrial, reason: str) -> None:
    """Why a completed trial that earned a place among the kept has no weights."""
    _write(trial, {WEIGHTS_NOT_KEPT: reason})


def lost(storage: optuna.storages.BaseStorage, trial_id: int, *, reason: str, epochs_trained: int) -> None:
    """A running trial whose worker is gone, about to be failed by id (search/retries.py fail_lost_trials): why, and the
    epochs it reported. A failed trial takes no more attributes, so these come first."""
    storage.set_trial_user_attr(trial_id, FAILURE, reason)
    storage.set_trial_user_attr(trial_id, EPOCHS_TRAINED, epochs_trained)


def queue_baseline(study: optuna.Study, params: Mapping[str, Any], name: str) -> None:
    """Queue the baseline `name` at `params`, its point in the study's space: its trial is known by its name."""
    study.enqueue_trial(dict(params), user_attrs={BASELINE: name})


def warm_start_copy(trial: FrozenTrial, study: str, **fields: Any) -> FrozenTrial:
    """A copy of `trial`, of study `study`, for a study it warm-starts, made of optuna.trial.create_trial's `fields`
    (state, values, params, distributions, constraints): it carries the trial's config, test accuracy and measures,
    and where it came from."""
    from optuna.trial import create_trial

    kept = {key: trial.user_attrs[key] for key in (CONFIG, TEST_ACCURACY, *MEASURES.values())
            if key in trial.user_attrs}
    return create_trial(**fields, user_attrs={**kept, WARM_START: {"study": study, "trial": trial.number}})


# Read back ---------------------------------------------------------------------------------


def config(trial: FrozenTrial) -> dict[str, Any] | None:
    """Every parameter the trial trained with (None: a trial that never started, or not hpsearch's)."""
    return trial.user_attrs.get(CONFIG)


def stored_recipe(trial: FrozenTrial, *, split: Mapping[str, Any], seed: int, params: Mapping[str, Any] | None = None,
                  storage: str | None = None) -> TrialRecord:
    """A completed trial's recipe (TrialRecord.from_attrs), with its study's split and seed; `params` in place of
    its stored config. ValueError for a trial that ended early without an `epochs` parameter: the epochs it trained
    are not its recipe's."""
    attrs = trial.user_attrs if params is None else {**trial.user_attrs, CONFIG: params}
    if trial.state.name != "COMPLETE" and not attrs[CONFIG].get("epochs"):
        raise ValueError(f"trial #{trial.number} is {trial.state.name.lower()}: only a completed trial records the "
                         "epochs of its recipe")
    return TrialRecord.from_attrs(attrs, split=split, seed=seed, storage=storage)


def input_shape(trial: FrozenTrial) -> tuple[int, int, int] | None:
    """The (C, H, W) the trial's model was built for (None: recorded by no hpsearch before it)."""
    shape = trial.user_attrs.get(INPUT_SHAPE)
    return tuple(shape) if shape else None


def baseline(trial: FrozenTrial) -> str | None:
    """The baseline's name, on a trial queued as one."""
    return trial.user_attrs.get(BASELINE)


def run_id(trial: FrozenTrial) -> str | None:
    """The run that ran the trial (None: one that never started, or an hpsearch before runs were recorded)."""
    return trial.user_attrs.get(RUN)


def worker(trial: FrozenTrial) -> str | None:
    """host:pid of the process that ran the trial."""
    return trial.user_attrs.get(WORKER)


def resumed_from(trial: FrozenTrial) -> int | None:
    """The epoch a copy's checkpoint held when it resumed (None: it started from the first)."""
    return trial.user_attrs.get(RESUMED_FROM_EPOCH)


def stopped_by_request(trial: optuna.trial.BaseTrial, reason: str) -> None:
    """A running trial stopped at an epoch end by `hpsearch stop`: why (its copy is queued unless discarded)."""
    _write(trial, {FAILURE: reason})


def warm_start(trial: FrozenTrial) -> Mapping[str, Any] | None:
    """Where a trial copied from another study came from: {"study", "trial"}; None for the study's own."""
    return trial.user_attrs.get(WARM_START)


def measured(trial: FrozenTrial, name: str) -> float | None:
    """The trial's measure of a limit or second objective, "params" or "train_seconds" (None: not recorded)."""
    return trial.user_attrs.get(MEASURES[name])


def weights_artifact(trial: FrozenTrial) -> str | None:
    """The artifact id of the trial's kept weights (None: never kept)."""
    return trial.user_attrs.get(WEIGHTS)


def stored_curve(trial: FrozenTrial) -> list[float]:
    """A two-objective trial's validation accuracy after each epoch, epoch 1 first ([] for any other)."""
    return trial.user_attrs.get(CURVE, [])


def pruner_state(trial: FrozenTrial) -> dict[str, Any]:
    """What the pruner wrote on a two-objective trial's single-objective view (curvepruning)."""
    return trial.user_attrs.get(PRUNER_ATTRS, {})


def confirmation(trial: FrozenTrial) -> Confirmation | None:
    """The trial's confirmation, on a trial ranking.study_trials gave (with_confirmation)."""
    stored = trial.user_attrs.get(CONFIRM)
    return None if stored is None else Confirmation.from_dict(stored)


def with_confirmation(trial: FrozenTrial, confirmation: Confirmation) -> FrozenTrial:
    """A copy of `trial` carrying its confirmation (a finished trial's own attributes are frozen)."""
    confirmed = copy.copy(trial)
    confirmed.user_attrs = {**trial.user_attrs, CONFIRM: confirmation.as_dict()}
    return confirmed


def optuna_state(trial: FrozenTrial) -> dict[str, Any]:
    """What Optuna, its samplers and pruners keep on a trial (its system attributes)."""
    return dict(trial.system_attrs)


def stand_in(trial: FrozenTrial, **fields: Any) -> FrozenTrial:
    """A trial standing in for `trial` in an in-memory view of its study, made of optuna.trial.create_trial's
    `fields` (state, values, params, ...): it carries what hpsearch stored on `trial`, and as Optuna's state what
    the pruner wrote on the trial's single-objective view (curvepruning), where the view's pruner reads it."""
    from optuna.trial import create_trial

    return create_trial(**fields, user_attrs=trial.user_attrs, system_attrs=pruner_state(trial))


@dataclass(frozen=True)
class Outcome:
    """How a trial went, as it recorded it beside Optuna's state and values; None where it recorded nothing (not
    reached, or an older hpsearch)."""

    baseline: str | None
    epochs_trained: int | None
    seconds: float | None  # wall time
    train_seconds: float | None  # the sum of its epochs
    val_accuracy: float | None  # after its last epoch, where it trained to its end
    test_accuracy: float | None
    param_count: int | None
    device: str | None
    failure: str | None  # why it failed
    over_limit: str | None  # why it was stopped over a limit
    stopped: str | None  # why hpsearch stopped it early
    weights_not_kept: str | None
    config: dict[str, Any] | None
    confirmation: Confirmation | None


def outcome(trial: FrozenTrial | optuna.Trial) -> Outcome:
    """How a trial went (a running one: so far)."""
    attrs = trial.user_attrs
    return Outcome(
        baseline=attrs.get(BASELINE), epochs_trained=attrs.get(EPOCHS_TRAINED),
        seconds=attrs.get(SECONDS), train_seconds=attrs.get(TRAIN_SECONDS), val_accuracy=attrs.get(VAL_ACCURACY),
        test_accuracy=attrs.get(TEST_ACCURACY), param_count=attrs.get(PARAM_COUNT), device=attrs.get(DEVICE),
        failure=attrs.get(FAILURE), over_limit=attrs.get(OVER_LIMIT), stopped=attrs.get(STOPPED),
        weights_not_kept=attrs.get(WEIGHTS_NOT_KEPT), config=attrs.get(CONFIG), confirmation=confirmation(trial))


def provenance(trial: FrozenTrial) -> Provenance:
    """Where the trial ran (None for what an older hpsearch did not record)."""
    attrs = trial.user_attrs
    return Provenance(device=attrs.get(DEVICE), torch=attrs.get(TORCH), optuna=attrs.get(OPTUNA),
                      dataset_source=attrs.get(DATASET_SOURCE), worker=attrs.get(WORKER), slurm=attrs.get(SLURM))


# Optuna's retry chain ----------------------------------------------------------------------
# A failed trial's queued copy carries Optuna's chain of attempts (RetryHeartbeatStaleTrialCallback's system
# attributes), read by its helpers: experimental since Optuna 2.8, and unchanged since.


def _chain(read: Callable[[Any], Any], given: Any) -> Any:
    """What `read` says of `given` (a trial, or trials) through Optuna's retry helpers, without their warning that
    they are experimental."""
    from hpsearch.storage import quiet_experimental

    with quiet_experimental():
        return read(given)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The attempts a queued copy retries, first first ([] for a first attempt)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return _chain(RetryHeartbeatStaleTrialCallback.retry_history, trial)


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """The numbers of the attempts among `trials`' chains that a later copy retries: a retried trial counts once, as
    its copy. Optuna's helper warns it is experimental at each call, its warning quieted here once for all of them:
    quieted per trial, it took 0.04 s of the 0.2 s `hpsearch status` reads 8,000 trials in."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return _chain(lambda chained: {n for t in chained for n in RetryHeartbeatStaleTrialCallback.retry_history(t)},
                  trials)


def retried(trial: FrozenTrial) -> FrozenTrial:
    """A failed trial as its queued copy is made from it (by Optuna's RetryHeartbeatStaleTrialCallback, which copies
    every user attribute): keeping of hpsearch's attributes only what to run (RETRIED), so that a copy that completed
    does not say why its first attempt failed. A copy: the callback adds to the chain it is given."""
    kept = copy.deepcopy(trial)
    kept.user_attrs = {key: value for key, value in trial.user_attrs.items() if key in RETRIED}
    return kept


def first_attempt(trial: optuna.Trial) -> int:
    """The number of a running trial's first attempt: its own, unless it is a queued copy of a failed one."""
    from hpsearch.storage.optuna_private import trial_by_number

    return stored_first_attempt(trial_by_number(trial.study, trial.number))


def copy_of(trial: optuna.Trial) -> int | None:
    """The attempt a running trial continues, where it is a queued copy of a failed one (the last of its chain)."""
    from hpsearch.storage.optuna_private import trial_by_number

    return last_attempt(trial_by_number(trial.study, trial.number))


def stored_first_attempt(trial: FrozenTrial) -> int:
    """The number of a stored trial's first attempt: its own, unless it is a queued copy of a failed one."""
    chain = retry_history(trial)
    return chain[0] if chain else trial.number


def last_attempt(trial: FrozenTrial) -> int | None:
    """The attempt a stored queued copy continues (the last of its chain); None for a first attempt."""
    chain = retry_history(trial)
    return chain[-1] if chain else None


# What an overview reads of every trial beside its state and values (`hpsearch status`; an unfinished trial is read
# in full): what counts it, ranks it, and places it in its run and its chain of copies. Optuna keeps a trial's
# constraints in system attributes named constraints:NAME (an older Optuna: a list under constraints).
BRIEF_USER_KEYS = (BASELINE, WARM_START, TEST_ACCURACY, RUN, EPOCHS_TRAINED)
BRIEF_SYSTEM_KEYS = ("retry_history", "constraints", *(f"constraints:{name}" for name in MEASURES))


def queued_params(trial: optuna.Trial) -> dict[str, Any]:
    """The parameters a running trial was queued with (enqueue_trial's; a retried copy carries its own)."""
    from hpsearch.storage.optuna_private import trial_by_number

    return trial_by_number(trial.study, trial.number).system_attrs.get(FIXED_PARAMS) or trial.params
