"""What hpsearch stores on a study: what it was made from, what its runs held, and its confirmations.

Read in one go (each read of a study's attributes is a query) as a StudyRecord; written by studystore when a
run opens the study, and by confirm. Standard library only at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpsearch.record.confirm import Confirmation, confirmations
from hpsearch.record.keys import (
    STUDY_ATTRS,
    STUDY_CHANGES,
    STUDY_DATASET,
    STUDY_EPOCHS,
    STUDY_LIMITS,
    STUDY_MADE_WITH,
    STUDY_SEED,
    STUDY_SPEC_PATH,
    STUDY_SPLIT,
    STUDY_STOP,
    STUDY_STOP_RULES,
)

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class StudyRecord:
    """A study's attributes as hpsearch stored them; None (or empty) where an older hpsearch stored none."""

    dataset: str | None = None  # the dataset's name
    epochs: int | None = None  # budget.epochs when the study was made
    spec_path: str | None = None  # the study file it was made from
    split: Mapping[str, Any] | None = None  # DatasetSpec.recorded(): with the seed, what rebuilds every trial
    seed: int | None = None  # the training seed of every trial
    limits: Mapping[str, Any] = field(default_factory=dict)  # the limits the last run held, None for unset ones
    made_with: Mapping[str, Any] | None = None  # what decides its trials' results (studystore.decided_by)
    accepted_changes: tuple[Mapping[str, Any], ...] = ()  # each change a run was told to accept
    stop_rules: list[Mapping[str, Any]] | None = None  # what ended its runs early (results/trials.py)
    confirmations: Mapping[int, Confirmation] = field(default_factory=dict)  # by trial number
    stop_request: Mapping[str, Any] | None = None  # `hpsearch stop`'s: who asked, when, which runs, queued copies too
    by_hpsearch: bool = False  # whether it holds any of hpsearch's study attributes

    @property
    def bounds(self) -> dict[str, Any]:
        """The limits the last run held that bound something: name -> bound."""
        return {name: bound for name, bound in self.limits.items() if bound is not None}


def study_record(study: optuna.Study) -> StudyRecord:
    """The study's record, in one read of its attributes."""
    return study_record_of(study.user_attrs)


def stored_study_record(storage: optuna.storages.BaseStorage, study_id: int) -> StudyRecord:
    """The record of the study `study_id` in `storage`, read without loading the study (`hpsearch status`)."""
    return study_record_of(storage.get_study_user_attrs(study_id))


def study_record_of(attrs: Mapping[str, Any]) -> StudyRecord:
    return StudyRecord(
        dataset=attrs.get(STUDY_DATASET), epochs=attrs.get(STUDY_EPOCHS), spec_path=attrs.get(STUDY_SPEC_PATH),
        split=attrs.get(STUDY_SPLIT), seed=attrs.get(STUDY_SEED), limits=attrs.get(STUDY_LIMITS) or {},
        made_with=attrs.get(STUDY_MADE_WITH), accepted_changes=tuple(attrs.get(STUDY_CHANGES, ())),
        stop_rules=attrs.get(STUDY_STOP_RULES), confirmations=confirmations(attrs), stop_request=attrs.get(STUDY_STOP),
        by_hpsearch=any(key in attrs for key in STUDY_ATTRS))


def study_made(study: optuna.Study, *, dataset: str, epochs: int, spec_path: str | None, split: Mapping[str, Any],
         seed: int) -> None:
    """A new study: its dataset, budget epochs and study file, and what `hpsearch export` needs to rebuild a trial
    without the study file (split and seed)."""
    for key, value in ((STUDY_DATASET, dataset), (STUDY_EPOCHS, epochs), (STUDY_SPEC_PATH, spec_path),
                       (STUDY_SPLIT, dict(split)), (STUDY_SEED, seed)):
        study.set_user_attr(key, value)


def held_limits(study: optuna.Study, limits: Mapping[str, Any]) -> None:
    """The limits this run holds (None for an unset one): a later run that holds others is refused."""
    study.set_user_attr(STUDY_LIMITS, dict(limits))


def ran_under(study: optuna.Study, stop_rules: list[Mapping[str, Any]]) -> None:
    """The study's stop rules with this run's added (results/trials.py stop_rules_with)."""
    study.set_user_attr(STUDY_STOP_RULES, list(stop_rules))


def made_with(study: optuna.Study, decided_by: Mapping[str, Any]) -> None:
    """What this run's trials are made with (studystore.decided_by)."""
    study.set_user_attr(STUDY_MADE_WITH, dict(decided_by))


def accepted_changes(study: optuna.Study, changes: list[Mapping[str, Any]]) -> None:
    """Every change a run was told to accept, this run's last."""
    study.set_user_attr(STUDY_CHANGES, list(changes))


def copy_to(view: optuna.Study, study: optuna.Study) -> None:
    """Every attribute of `study` onto `view`, an in-memory copy of it (its confirmations among them)."""
    for key, value in study.user_attrs.items():
        view.set_user_attr(key, value)
