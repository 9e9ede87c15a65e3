"""How a process reads a study's trials from an RDB storage: Optuna's RDBStorage with a faster _get_trials (plain
rows, not ORM objects), behind Optuna's cache with the trials kept in number order.

A module of its own because search/signals.py counts it in the database layer, where a signal is put off
until the query and its session have ended, as in Optuna's own storage code.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import functools
import gc
import json
from collections.abc import Callable, Container, Iterator

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState


class _TrialRows:
    """One trial's row and its child rows, read as Optuna's builder reads a TrialModel; attributes as
    (trial_id, key, decoded value)."""

    datetime_start = models.TrialModel.datetime_start  # Optuna's conversion of the stored naive UTC time
    datetime_complete = models.TrialModel.datetime_complete

    def __init__(self, row: sqlalchemy.Row):
        self.trial_id, self.number, state, start, complete = row
        self.state = TrialState[state]
        self._datetime_start_utc, self._datetime_complete_utc = _stored_time(start), _stored_time(complete)
        self.params, self.values, self.intermediate_values = [], [], []
        self.user_attributes, self.system_attributes = [], []

    def frozen(self, distribution: Callable[[str], BaseDistribution]) -> FrozenTrial:
        """The FrozenTrial Optuna's RDBStorage._build_frozen_trial_from_trial_model makes of the same rows, its
        distributions parsed once per distinct JSON (`distribution`): they were 40% of the time."""
        values = None
        if self.values:
            values = [0.0] * len(self.values)
            for _, objective, value, value_type in self.values:
                values[objective] = models.TrialValueModel.stored_repr_to_value(value, _VALUE_TYPE[value_type])
        distributions = {name: distribution(json_) for _, name, _, json_ in self.params}
        return FrozenTrial(
            number=self.number, state=self.state, value=None, values=values, datetime_start=self.datetime_start,
            datetime_complete=self.datetime_complete,
            params={name: distributions[name].to_external_repr(value) for _, name, value, _ in self.params},
            distributions=distributions,
            user_attrs={key: value for _, key, value in self.user_attributes},
            system_attrs={key: value for _, key, value in self.system_attributes},
            intermediate_values={step: models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
                value, _INTERMEDIATE_TYPE[value_type]) for _, step, value, value_type in self.intermediate_values},
            trial_id=self.trial_id)


_TRIAL_COLUMNS = ("trial_id", "number", "state", "datetime_start", "datetime_complete")
# Read as the driver gives them, converted here: SQLAlchemy's conversion of enum names and of SQLite's
# time strings was a third of the read.
_AS_STORED = {"state", "datetime_start", "datetime_complete", "value_type", "intermediate_value_type"}
_VALUE_TYPE = models.TrialValueModel.TrialValueType.__members__
_INTERMEDIATE_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType.__members__


def _stored_time(value: str | datetime.datetime | None) -> datetime.datetime | None:
    """A stored time as SQLAlchemy's DateTime reads it: SQLite keeps text, PostgreSQL's driver gives datetimes."""
    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else value


def _column(table: sqlalchemy.Table, name: str) -> sqlalchemy.ColumnElement:
    return sqlalchemy.type_coerce(table.c[name], sqlalchemy.String) if name in _AS_STORED else table.c[name]


# Each child table by the attribute Optuna's builder reads it as: its model, the columns read (trial_id first),
# the order. The order is the one its unique index gives SQLite's ORM read (so attributes come back in the same
# order there; PostgreSQL's ORM read has no set order); params in Optuna's own order, param_id.
_CHILDREN = {
    "params": (models.TrialParamModel, ("trial_id", "param_name", "param_value", "distribution_json"), "param_id"),
    "values": (models.TrialValueModel, ("trial_id", "objective", "value", "value_type"), "objective"),
    "intermediate_values": (models.TrialIntermediateValueModel,
                            ("trial_id", "step", "intermediate_value", "intermediate_value_type"), "step"),
    "user_attributes": (models.TrialUserAttributeModel, ("trial_id", "key", "value_json"), "key"),
    "system_attributes": (models.TrialSystemAttributeModel, ("trial_id", "key", "value_json"), "key"),
}


def _attributes(rows: list[sqlalchemy.Row]) -> list[tuple[int, str, object]]:
    """(trial_id, key, value) of each attribute row, every value decoded in one call as one JSON array: a
    json.loads call per value was a third of the read."""
    values = json.loads("[" + ",".join(value_json for _, _, value_json in rows) + "]")
    return [(trial_id, key, value) for (trial_id, key, _), value in zip(rows, values)]


class TrialRowsStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, its trials read as plain rows instead of ORM objects.

    Optuna's cache in front of an RDB storage reads every trial once per process, then only new and
    unfinished ones; that first read went through SQLAlchemy's ORM at 1.3-1.7 ms a trial, over 10 s
    before a run on a study of 8,000 trials could start its first. The same six queries read as rows
    take a fraction of that (bench/big_study.py). Same contract as RDBStorage._get_trials: the study's
    trials in `states`, those of `included_trial_ids` up to `trial_id_greater_than` and all after it, in
    trial_id order; the same FrozenTrials (tests/search/test_work_once.py compares them).
    """

    def _get_trials(self, study_id: int, states: Container[TrialState] | None, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        trials = models.TrialModel.__table__
        in_range = sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id)
        if trial_id_greater_than > -1:
            # The later reads, one per get_all_trials: two index searches, not one scan of all the study's trials
            # (an OR of the two conditions made SQLite scan them, 1.2 ms a query at 8,000 trials).
            included = [i for i in included_trial_ids if i <= trial_id_greater_than]
            in_range = sqlalchemy.union(in_range.where(trials.c.trial_id > trial_id_greater_than),
                                        in_range.where(trials.c.trial_id.in_(included)))
        chosen = sqlalchemy.select(*(_column(trials, c) for c in _TRIAL_COLUMNS)).where(trials.c.trial_id.in_(in_range))
        if states is not None:
            chosen = chosen.where(trials.c.state.in_(list(states)))
        with _create_scoped_session(self.scoped_session) as session, _collector_paused():
            models.StudyModel.find_or_raise_by_id(study_id, session)  # KeyError for a study that is not there
            read = {row[0]: _TrialRows(row) for row in session.execute(chosen.order_by(trials.c.trial_id)).all()}
            # Each query sees what other workers committed before it started: the child rows are read for the
            # trials in range whatever their state now, and kept for those the first query chose.
            for name, (model, columns, order) in _CHILDREN.items():
                table = model.__table__
                rows = session.execute(sqlalchemy.select(*(_column(table, c) for c in columns))
                                       .where(table.c.trial_id.in_(in_range))
                                       .order_by(table.c.trial_id, table.c[order])).all()
                for row in _attributes(rows) if columns[-1] == "value_json" else rows:
                    if (trial := read.get(row[0])) is not None:
                        getattr(trial, name).append(row)
            distribution = functools.lru_cache(maxsize=None)(optuna.distributions.json_to_distribution)
            return [trial.frozen(distribution) for trial in read.values()]


class TrialCache(_CachedStorage):
    """Optuna's cache in front of an RDB storage, its trials also kept in a list in number order.

    Optuna's cache sorts all of a study's trials by number on every get_all_trials, several times a trial (the
    run's count, Optuna's ask, the pruner): on a study of 8,000 trials that was most of what a run's reads cost
    beyond the first (bench/big_study.py). Trials arrive in trial_id order, which is number order within a study,
    so the list only grows at its end or has a trial replaced in place; when one arrives out of order (a
    worker's trial committed after a later one, on PostgreSQL) the list is sorted again.
    """

    def __init__(self, backend: optuna.storages.RDBStorage):
        super().__init__(backend)
        self._in_order: dict[int, list[FrozenTrial]] = {}

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        super()._add_trials_to_cache(study_id, trials)
        in_order = self._in_order.setdefault(study_id, [])
        for trial in trials:
            numbered_by_place = not in_order or in_order[-1].number == len(in_order) - 1  # no number missing
            if numbered_by_place and trial.number < len(in_order):
                in_order[trial.number] = trial
            elif numbered_by_place and trial.number == len(in_order):
                in_order.append(trial)
            else:
                in_order[:] = sorted(self._studies[study_id].trials.values(), key=lambda t: t.number)
                return

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            in_order = self._in_order.get(study_id, [])
            trials = list(in_order) if states is None else [t for t in in_order if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            self._in_order.pop(study_id, None)
        super().delete_study(study_id)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a read makes its many small objects, none of them cyclic. Each
    allocation threshold crossed ran a collection, and the oldest generation's ran through torch's objects
    too: on 8,000 trials with torch loaded, collections took half the read."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
