"""Create or load a study on its storage, refusing one made from another study file, dataset split or
direction, or one whose study file changed what decides its results since its trials ran.
"""

from __future__ import annotations

import datetime
import json
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import FrozenTrial

from hpsearch import record
from hpsearch.record import StudyRecord
from hpsearch.record.keys import STUDY_CHANGES
from hpsearch.errors import HpsearchError
from hpsearch.results.render import plural
from hpsearch.results.trials import stop_rules_with
from hpsearch.search.samplers import make_pruner, make_sampler
from hpsearch.storage import cached, mask, open_existing, open_storage
from hpsearch.studyfile.limits import MEASURES, describe
from hpsearch.studyfile.schema import shown
from hpsearch.studyfile.types import Conditional, StudySpec

if TYPE_CHECKING:
    from hpsearch.training.devicedata import DeviceData

log = logging.getLogger(__name__)

EPOCHS = "budget.epochs"  # the keys of a study's made_with record: where each thing is set, as messages name it
CLASSES = "dataset classes"
IMAGES = "dataset images"
PARAMETERS = ("space.", "fixed.")  # + a parameter's name
WAYS_OUT = "rename the study (name: in the file) or use another --storage"


def directions(spec: StudySpec) -> list[str]:
    """Validation accuracy is maximised; a second objective (parameters, training seconds) minimised."""
    return ["maximize"] + ["minimize"] * (len(spec.objectives) - 1)


def open_study(spec: StudySpec, storage: str | optuna.storages.BaseStorage,
               sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None, *,
               data: DeviceData | None = None, accept_change: bool = False) -> optuna.Study:
    """The study named spec.name on the storage, created if new (maximising validation accuracy, or with
    two objectives a multi-objective study whose result is a Pareto front).

    sampler(n) builds the sampler for a study holding n trials (a run's SamplerSeed.sampler); without it the
    sampler is unseeded. Before anything is written, a study whose trials ran under other epochs, data or
    parameter distributions is refused (changes), unless accept_change, which records the change; `data`, the
    dataset as this run read it, adds its classes and images to what is compared and recorded.
    """
    storage = cached(open_storage(storage) if isinstance(storage, str) else storage)
    try:
        count = storage.get_n_trials(storage.get_study_id_from_name(spec.name))  # the cache's one full read
    except KeyError:
        count = 0
    pruner = make_pruner(spec.pruner.name, spec.pruner.options, spec.budget.epochs)
    sampler = sampler(count) if sampler is not None else make_sampler(spec.sampler.name, spec.sampler.options, None)
    study = optuna.create_study(storage=storage, study_name=spec.name, directions=directions(spec), pruner=pruner,
                                sampler=sampler, load_if_exists=True)
    stored = record.study_record(study)
    changed = changes(spec, stored, study.get_trials(deepcopy=False) if count else [], data, accept_change)
    # The limits this run holds: check_existing refuses a later run that holds others on a study with trials.
    record.held_limits(study, {name: getattr(spec.limits, name) for name in MEASURES})
    # The rule that stops this run early, from its first trial on, where it differs from the last one recorded.
    if (rules := stop_rules_with(stored.stop_rules, spec, count)) is not None:
        record.ran_under(study, rules)
    if not count:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 3.2
            study.set_metric_names(list(spec.objectives))
        record.study_made(study, dataset=spec.dataset.name, epochs=spec.budget.epochs, spec_path=spec.path,
                          split=spec.dataset.recorded(), seed=spec.seed)
    _record(study, stored, decided_by(spec, data), changed, count)
    return study


# --------------------------------------------------------------------------------------------
# What decides a study's results, recorded when it is made and compared at every run.


def decided_by(spec: StudySpec, data: DeviceData | None = None) -> dict[str, Any]:
    """What decides the results of a study's trials, keyed by where it is set: budget.epochs, each searched
    parameter's distribution (Optuna's, as JSON) and each fixed value, and, once the data is read, its classes and
    a fingerprint of its images (the same copy in another folder or on another machine gives the same). The
    sampler learns from, and `best` and `report` rank, trials run under one record as if measured alike; what a run
    may change without it (its trials, timeout, baselines, sampler and pruner options, target, about) is not here."""
    record: dict[str, Any] = {EPOCHS: spec.budget.epochs}
    record |= {f"space.{name}": json.loads(distribution_to_json(dist)) for name, dist in _distributions(spec).items()}
    record |= {f"fixed.{name}": value for name, value in spec.fixed.items()}
    if data is not None:
        record |= {CLASSES: list(data.classes), IMAGES: data.fingerprint}
    return json.loads(json.dumps(record))  # as the storage gives it back: lists, not tuples


def changes(spec: StudySpec, stored: StudyRecord, trials: list[FrozenTrial], data: DeviceData | None = None,
            accept_change: bool = False) -> list[str]:
    """What decides the results that changed since the study's trials ran ('budget.epochs 1 -> 2'), for the run to
    record; HpsearchError where the run is refused: always for a parameter Optuna cannot sample beside its trials'
    (another kind, log scale or choices), and for any other change unless accept_change. A study without trials
    has nothing to compare. Without `data` its classes and images are not compared (they are once it is read); a
    study made before studies recorded any of this is compared on its epochs only (those it was made with)."""
    if not trials:
        return []
    if clash := _unsearchable(spec, trials):
        raise HpsearchError(f"study {spec.name!r} in the storage searched {clash}: Optuna cannot sample one "
                            f"parameter as another kind, on another scale or among other choices in one study; "
                            f"{WAYS_OUT}")
    wanted = decided_by(spec, data)
    recorded = stored.made_with
    compared = set()
    if recorded is None:
        recorded = {EPOCHS: stored.epochs} if stored.epochs is not None else {}
    else:  # a parameter searched or fixed on one side only is a change too
        compared = {key for key in recorded.keys() ^ wanted.keys() if key.startswith(PARAMETERS)}
    compared |= recorded.keys() & wanted.keys()
    changed = [f"{key} {_words(key, recorded.get(key))} -> {_words(key, wanted.get(key))}"
               for key in sorted(compared) if recorded.get(key) != wanted.get(key)]
    if changed and not accept_change:
        raise HpsearchError(f"study {spec.name!r} in the storage changed since its {plural(len(trials), 'trial')} ran: "
                            f"{', '.join(changed)}; best and report would rank them with new trials as if measured "
                            f"alike: {WAYS_OUT}, or run with --accept-change to add to it anyway")
    return changed


def _unsearchable(spec: StudySpec, trials: list[FrozenTrial]) -> str | None:
    """'space.lr as float [0.01, 0.2], the file says float [0.01, 0.2] log' for the first searched parameter whose
    distribution Optuna would refuse (a ValueError as the trial starts) beside one its trials were sampled from."""
    sampled: dict[str, dict[str, BaseDistribution]] = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            sampled.setdefault(name, {}).setdefault(distribution_to_json(dist), dist)
    for name, wanted in _distributions(spec).items():
        for old in sampled.get(name, {}).values():
            try:
                check_distribution_compatibility(old, wanted)
            except ValueError:
                return f"space.{name} as {_distribution_words(old)}, the file says {_distribution_words(wanted)}"
    return None


def _distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """Each sampler parameter's Optuna distribution, as training/space.py samples it: a searched parameter's, or each
    branch's of one ranged by an earlier choice (lr[optimizer=adam])."""
    from hpsearch.training.space import distribution  # torch: the commands that only read a study never come here

    out = {}
    for name, dist in spec.space.items():
        branches = [dist.branch(name, value) for value, _ in dist.branches] if isinstance(dist, Conditional) else \
            [(name, dist)]
        out |= {key: distribution(branch) for key, branch in branches}
    return out


def _words(key: str, value: Any) -> str:
    """A recorded value as a message shows it."""
    if value is None:
        return "not searched" if key.startswith("space.") else "not fixed"
    if key.startswith("space."):
        return _distribution_words(json_to_distribution(json.dumps(value)))
    if key == CLASSES:
        return f"{len(value)} {shown(value)}"
    if key == IMAGES:
        return f"sha256 {value[:12]}"
    return shown(value)


def _distribution_words(dist: BaseDistribution) -> str:
    """'int [4, 16]', 'float [1e-05, 0.1] log', 'float [0, 1] step 0.25', 'choice ["adam", "sgd"]'."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice {shown(list(dist.choices))}"
    is_int = isinstance(dist, IntDistribution)
    words = f"{'int' if is_int else 'float'} [{dist.low:g}, {dist.high:g}]"
    if dist.step is not None and not (is_int and dist.step == 1):
        words += f" step {dist.step:g}"
    return words + (" log" if dist.log else "")


def _record(study: optuna.Study, stored: StudyRecord, wanted: dict[str, Any], changed: list[str],
            count: int) -> None:
    """Record what this run's trials are made with (keeping the data's record where this run has none), and the
    changes it accepted: the trial they start from, and when."""
    if changed:
        accepted = {"from_trial": count, "changes": changed,
                    "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        record.accepted_changes(study, [*stored.accepted_changes, accepted])
        log.warning("study %s: accepted %s; trials from #%d on run under the change (recorded in the study's %s)",
                    study.study_name, ", ".join(changed), count, STUDY_CHANGES)
    kept = {key: value for key, value in (stored.made_with or {}).items() if key in (CLASSES, IMAGES)}
    if (made := kept | wanted) != stored.made_with:
        record.made_with(study, made)


def _describe_split(split: dict, seed: int) -> str:
    """'dataset.validation 0.15, dataset.test 0.2, dataset.split_seed 0, seed 0' (an image folder's path and
    size too)."""
    return ", ".join([f"dataset.{key} {value}" for key, value in split.items() if key != "name"] + [f"seed {seed}"])


def check_existing(spec: StudySpec, storage: optuna.storages.BaseStorage, accept_change: bool = False) -> None:
    """Refuse to add trials to a same-named study that was made for something else, before the data is read
    (open_study compares the data once it is)."""
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        return
    refuse_foreign(study, "the storage")
    stored = [d.name.lower() for d in study.directions]
    if stored != directions(spec) or study.metric_names not in (None, list(spec.objectives)):
        made = ", ".join(study.metric_names or ()) or f"directions {', '.join(stored)}"
        raise HpsearchError(f"study {spec.name!r} in the storage was made for objectives {made}, the file says "
                            f"{', '.join(spec.objectives)}: rename the study (name: in the file) or use another "
                            "--storage")
    stored = record.study_record(study)  # one read: each is a query
    trials = study.get_trials(deepcopy=False)
    made_for = stored.dataset
    if made_for is not None and made_for != spec.dataset.name:
        raise HpsearchError(f"study {spec.name!r} in the storage was made for dataset {made_for}, the file says "
                            f"{spec.dataset.name}: rename the study (name: in the file) or use another --storage")
    made_with = stored.bounds
    wanted = {name: getattr(spec.limits, name) for name in MEASURES if getattr(spec.limits, name) is not None}
    if made_with != wanted and trials:
        # Each trial's constraint is its measure minus the limit it ran under: other limits would leave the
        # old trials judged by the old ones (and GP refuses trials with different constraints).
        raise HpsearchError(f"study {spec.name!r} in the storage was made with limits {describe(made_with)}, the "
                            f"file says {describe(wanted)}: its trials were judged by the old limits; rename the "
                            "study (name: in the file) or use another --storage")
    made_on = stored.split, stored.seed
    if None not in made_on and made_on != (spec.dataset.recorded(), spec.seed) and trials:
        # export rebuilds every trial with the split and seed recorded here: trials run on others would not retrain
        # to their numbers, and accuracies measured on different validation sets would be ranked together.
        given = _describe_split(spec.dataset.recorded(), spec.seed)
        raise HpsearchError(f"study {spec.name!r} in the storage was made with {_describe_split(*made_on)}, the file "
                            f"says {given}: its trials were trained and measured on those; rename the study (name: "
                            "in the file) or use another --storage")
    changes(spec, stored, trials, accept_change=accept_change)


def load_existing(name: str, storage_url: str) -> optuna.Study:
    """The stored study `name`, made by hpsearch, for the commands that read one."""
    storage = open_existing(storage_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        raise HpsearchError(f"no study named {name!r} in {mask(storage_url)} (studies there: "
                            f"{', '.join(names) or 'none'}; --storage chooses another)")
    study = optuna.load_study(study_name=name, storage=storage)
    refuse_foreign(study, mask(storage_url))
    return study


def refuse_foreign(study: optuna.Study, where: str) -> None:
    """HpsearchError for a same-named study that hpsearch did not make (plain Optuna's, say): its trials carry none
    of the attributes hpsearch reads, and their values need not be accuracies. Every study hpsearch has made
    holds at least one of its study attributes (the oldest ones the study file's path) or a trial's config;
    one with no trials yet is nobody's."""
    if record.study_record(study).by_hpsearch:
        return
    trials = study.get_trials(deepcopy=False)
    if trials and not any(record.config(t) is not None for t in trials):
        raise HpsearchError(f"study {study.study_name!r} in {where} was not made by hpsearch (it records no "
                            "dataset): hpsearch reads and adds to its own studies only; give yours another name "
                            "(name: in the study file) or use another --storage")
