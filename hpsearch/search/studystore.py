"""Create or load a study on its storage, refusing one made from another study file, dataset split or
direction.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna

from hpsearch import trialrecord as A
from hpsearch.errors import HpsearchError
from hpsearch.results.trials import stop_rules_with
from hpsearch.search.samplers import make_pruner, make_sampler
from hpsearch.storage import cached, mask, open_existing, open_storage
from hpsearch.studyfile.limits import MEASURES, describe
from hpsearch.studyfile.types import StudySpec


def directions(spec: StudySpec) -> list[str]:
    """Validation accuracy is maximised; a second objective (parameters, training seconds) minimised."""
    return ["maximize"] + ["minimize"] * (len(spec.objectives) - 1)


def open_study(spec: StudySpec, storage: str | optuna.storages.BaseStorage,
               sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None) -> optuna.Study:
    """The study named spec.name on the storage, created if new (maximising validation accuracy, or with
    two objectives a multi-objective study whose result is a Pareto front).

    sampler(n) builds the sampler for a study holding n trials (a run's SamplerSeed.sampler); without it the
    sampler is unseeded.
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
    # The limits this run holds: check_existing refuses a later run that holds others on a study with trials.
    study.set_user_attr(A.STUDY_LIMITS, {name: getattr(spec.limits, name) for name in MEASURES})
    # The rule that stops this run early, from its first trial on, where it differs from the last one recorded.
    if (rules := stop_rules_with(study.user_attrs.get(A.STUDY_STOP_RULES), spec, count)) is not None:
        study.set_user_attr(A.STUDY_STOP_RULES, rules)
    if not count:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 3.2
            study.set_metric_names(list(spec.objectives))
        study.set_user_attr(A.STUDY_DATASET, spec.dataset.name)
        study.set_user_attr(A.STUDY_EPOCHS, spec.budget.epochs)
        study.set_user_attr(A.STUDY_SPEC_PATH, spec.path)
        # What `hpsearch export` needs to rebuild a trial without the study file: split and seed.
        study.set_user_attr(A.STUDY_SPLIT, spec.dataset.recorded())
        study.set_user_attr(A.STUDY_SEED, spec.seed)
    return study


def _describe_split(split: dict, seed: int) -> str:
    """'dataset.validation 0.15, dataset.test 0.2, dataset.split_seed 0, seed 0' (an image folder's path and
    size too)."""
    return ", ".join([f"dataset.{key} {value}" for key, value in split.items() if key != "name"] + [f"seed {seed}"])


def check_existing(spec: StudySpec, storage: optuna.storages.BaseStorage) -> None:
    """Refuse to add trials to a same-named study that was made for something else."""
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
    attrs = study.user_attrs  # one read: each is a query
    made_for = attrs.get(A.STUDY_DATASET)
    if made_for is not None and made_for != spec.dataset.name:
        raise HpsearchError(f"study {spec.name!r} in the storage was made for dataset {made_for}, the file says "
                            f"{spec.dataset.name}: rename the study (name: in the file) or use another --storage")
    made_with = {name: bound for name, bound in (attrs.get(A.STUDY_LIMITS) or {}).items() if bound is not None}
    wanted = {name: getattr(spec.limits, name) for name in MEASURES if getattr(spec.limits, name) is not None}
    if made_with != wanted and study.get_trials(deepcopy=False):
        # Each trial's constraint is its measure minus the limit it ran under: other limits would leave the
        # old trials judged by the old ones (and GP refuses trials with different constraints).
        raise HpsearchError(f"study {spec.name!r} in the storage was made with limits {describe(made_with)}, the "
                            f"file says {describe(wanted)}: its trials were judged by the old limits; rename the "
                            "study (name: in the file) or use another --storage")
    made_on = attrs.get(A.STUDY_SPLIT), attrs.get(A.STUDY_SEED)
    if None not in made_on and made_on != (spec.dataset.recorded(), spec.seed) and study.get_trials(deepcopy=False):
        # export rebuilds every trial with the split and seed recorded here: trials run on others would not retrain
        # to their numbers, and accuracies measured on different validation sets would be ranked together.
        given = _describe_split(spec.dataset.recorded(), spec.seed)
        raise HpsearchError(f"study {spec.name!r} in the storage was made with {_describe_split(*made_on)}, the file "
                            f"says {given}: its trials were trained and measured on those; rename the study (name: "
                            "in the file) or use another --storage")


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
    attrs = study.user_attrs
    if any(key in attrs for key in A.STUDY_ATTRS):
        return
    trials = study.get_trials(deepcopy=False)
    if trials and not any(A.CONFIG in t.user_attrs for t in trials):
        raise HpsearchError(f"study {study.study_name!r} in {where} was not made by hpsearch (it records no "
                            "dataset): hpsearch reads and adds to its own studies only; give yours another name "
                            "(name: in the study file) or use another --storage")
