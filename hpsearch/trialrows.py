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
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState


class _TrialRows:
    """One trial's row and its child rows, gathered into what Optuna's builder makes of a TrialModel."""

    def __init__(self, row: sqlalchemy.Row, clock: _LocalClock):
        self.trial_id, self.number, state, start, complete = row
        self.state = TrialState[state]
        self.datetime_start, self.datetime_complete = clock(start), clock(complete)
        self.params, self.distributions, self.values = {}, {}, []
        self.intermediate_values, self.user_attrs, self.system_attrs = {}, {}, {}

    def frozen(self) -> FrozenTrial:
        """The FrozenTrial Optuna's RDBStorage._build_frozen_trial_from_trial_model makes of the same rows."""
        values = None
        if self.values:
            values = [0.0] * len(self.values)
            for objective, value in self.values:
                values[objective] = value
        return FrozenTrial(
            number=self.number, state=self.state, value=None, values=values, datetime_start=self.datetime_start,
            datetime_complete=self.datetime_complete, params=self.params, distributions=self.distributions,
            user_attrs=self.user_attrs, system_attrs=self.system_attrs,
            intermediate_values=self.intermediate_values, trial_id=self.trial_id)


_HOUR = datetime.timedelta(hours=1)


class _LocalClock:
    """Optuna's reading of a stored time (models.TrialModel.datetime_start: naive UTC to naive local time),
    worked out once per hour of UTC time instead of once per value: value by value it was a seventh of the
    read. An hour whose first and last microsecond have the same UTC offset has it all through (no place
    changes its clocks twice within an hour); an hour with a change is converted value by value."""

    def __init__(self):
        self._offsets: dict[int, datetime.timedelta | None] = {}  # by hours since year 1

    def __call__(self, stored: str | datetime.datetime | None) -> datetime.datetime | None:
        if stored is None:
            return None
        # SQLite keeps text, PostgreSQL's driver gives datetimes.
        utc = datetime.datetime.fromisoformat(stored) if isinstance(stored, str) else stored
        hour = utc.toordinal() * 24 + utc.hour
        if hour not in self._offsets:
            start = utc.replace(minute=0, second=0, microsecond=0)
            first, last = _local_offset(start), _local_offset(start + _HOUR - datetime.timedelta(microseconds=1))
            self._offsets[hour] = first if first == last else None
        offset = self._offsets[hour]
        return utc + offset if offset is not None else utc + _local_offset(utc)


def _local_offset(utc: datetime.datetime) -> datetime.timedelta:
    """The local time's offset from UTC at a naive UTC time, as Optuna's conversion finds it."""
    return utc.replace(tzinfo=datetime.timezone.utc).astimezone().utcoffset()


_TRIAL_COLUMNS = ("trial_id", "number", "state", "datetime_start", "datetime_complete")
# Read as the driver gives them, converted here: SQLAlchemy's conversion of enum names and of SQLite's
# time strings was a third of the read.
_AS_STORED = {"state", "datetime_start", "datetime_complete", "value_type", "intermediate_value_type"}
_VALUE_TYPE = models.TrialValueModel.TrialValueType.__members__
_INTERMEDIATE_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType.__members__


def _column(table: sqlalchemy.Table, name: str) -> sqlalchemy.ColumnElement:
    return sqlalchemy.type_coerce(table.c[name], sqlalchemy.String) if name in _AS_STORED else table.c[name]


def _add_params(trials: dict[int, _TrialRows], rows: list[sqlalchemy.Row]) -> None:
    """Each distinct distribution JSON parsed once: parsing each row's was 40% of the read."""
    distribution = functools.lru_cache(maxsize=None)(optuna.distributions.json_to_distribution)
    for trial_id, name, value, json_ in rows:
        if (trial := trials.get(trial_id)) is not None:
            trial.distributions[name] = parsed = distribution(json_)
            trial.params[name] = parsed.to_external_repr(value)


def _add_values(trials: dict[int, _TrialRows], rows: list[sqlalchemy.Row]) -> None:
    for trial_id, objective, value, value_type in rows:
        if (trial := trials.get(trial_id)) is not None:
            trial.values.append((objective,
                                 models.TrialValueModel.stored_repr_to_value(value, _VALUE_TYPE[value_type])))


def _add_intermediate_values(trials: dict[int, _TrialRows], rows: list[sqlalchemy.Row]) -> None:
    for trial_id, step, value, value_type in rows:
        if (trial := trials.get(trial_id)) is not None:
            trial.intermediate_values[step] = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
                value, _INTERMEDIATE_TYPE[value_type])


def _attributes_adder(name: str) -> Callable[[dict[int, _TrialRows], list[sqlalchemy.Row]], None]:
    def add(trials: dict[int, _TrialRows], rows: list[sqlalchemy.Row]) -> None:
        """Every value decoded in one call, as one JSON array: a json.loads call per value was a third of the
        read."""
        values = json.loads("[" + ",".join([row[2] for row in rows]) + "]")
        last_id, attributes = None, None
        for (trial_id, key, _), value in zip(rows, values):
            if trial_id != last_id:  # rows come trial by trial: each trial looked up once
                last_id, trial = trial_id, trials.get(trial_id)
                attributes = getattr(trial, name) if trial is not None else None
            if attributes is not None:
                attributes[key] = value
    return add


# Each child table: its model, the columns read (trial_id first), the order, and what adds its rows to their
# trials. The order is the one its unique index gives SQLite's ORM read (so attributes come back in the same
# order there; PostgreSQL's ORM read has no set order); params in Optuna's own order, param_id.
_CHILDREN = (
    (models.TrialParamModel, ("trial_id", "param_name", "param_value", "distribution_json"), "param_id",
     _add_params),
    (models.TrialValueModel, ("trial_id", "objective", "value", "value_type"), "objective", _add_values),
    (models.TrialIntermediateValueModel, ("trial_id", "step", "intermediate_value", "intermediate_value_type"),
     "step", _add_intermediate_values),
    (models.TrialUserAttributeModel, ("trial_id", "key", "value_json"), "key", _attributes_adder("user_attrs")),
    (models.TrialSystemAttributeModel, ("trial_id", "key", "value_json"), "key", _attributes_adder("system_attrs")),
)


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
        in_range = _in_range(study_id, included_trial_ids, trial_id_greater_than)
        chosen = sqlalchemy.select(*(_column(trials, c) for c in _TRIAL_COLUMNS)).where(trials.c.trial_id.in_(in_range))
        if states is not None:
            chosen = chosen.where(trials.c.state.in_(list(states)))
        with _create_scoped_session(self.scoped_session) as session, _collector_paused():
            models.StudyModel.find_or_raise_by_id(study_id, session)  # KeyError for a study that is not there
            clock = _LocalClock()
            read = {row[0]: _TrialRows(row, clock)
                    for row in session.execute(chosen.order_by(trials.c.trial_id)).all()}
            # Each query sees what other workers committed before it started: the child rows are read for the
            # trials in range whatever their state now, and kept for those the first query chose.
            for model, columns, order, add in _CHILDREN:
                table = model.__table__
                add(read, session.execute(sqlalchemy.select(*(_column(table, c) for c in columns))
                                          .where(table.c.trial_id.in_(in_range))
                                          .order_by(table.c.trial_id, table.c[order])).all())
            return [trial.frozen() for trial in read.values()]

    def trials_in_brief(self, study_id: int, user_keys: Container[str], system_keys: Container[str]) -> list[FrozenTrial]:
        """Every trial of the study as an overview reads it (`hpsearch status`): its number, state, times and
        values, and of its attributes only those named; an unfinished trial (running or queued) with every
        attribute and its curve. No parameters. A few rows a trial, where _get_trials reads all it stores."""
        trials = models.TrialModel.__table__
        in_study = sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id)
        chosen = sqlalchemy.select(*(_column(trials, c) for c in _TRIAL_COLUMNS)).where(trials.c.study_id == study_id)
        named = {models.TrialUserAttributeModel: list(user_keys), models.TrialSystemAttributeModel: list(system_keys)}
        with _create_scoped_session(self.scoped_session) as session, _collector_paused():
            models.StudyModel.find_or_raise_by_id(study_id, session)
            clock = _LocalClock()
            read = {row[0]: _TrialRows(row, clock)
                    for row in session.execute(chosen.order_by(trials.c.trial_id)).all()}
            unfinished = [trial_id for trial_id, trial in read.items() if not trial.state.is_finished()]
            for model, columns, order, add in _CHILDREN:
                table = model.__table__
                if model is models.TrialParamModel:
                    continue
                if model is models.TrialIntermediateValueModel:
                    where = table.c.trial_id.in_(unfinished)
                elif model in named:
                    where = sqlalchemy.and_(table.c.trial_id.in_(in_study), sqlalchemy.or_(
                        table.c.key.in_(named[model]), table.c.trial_id.in_(unfinished)))
                else:
                    where = table.c.trial_id.in_(in_study)
                add(read, session.execute(sqlalchemy.select(*(_column(table, c) for c in columns)).where(where)
                                          .order_by(table.c.trial_id, table.c[order])).all())
            return [trial.frozen() for trial in read.values()]

    def heartbeat_ages(self, study_id: int) -> dict[int, float]:
        """Seconds since each running trial of the study last sent a heartbeat, by trial id, on the database's
        clock (as Optuna's stale check reads it)."""
        trials, beats = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
        running = (sqlalchemy.select(trials.c.trial_id, beats.c.heartbeat)
                   .join(beats, beats.c.trial_id == trials.c.trial_id)
                   .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING))
        with _create_scoped_session(self.scoped_session, True) as session:
            now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
            return {trial_id: (now - beat).total_seconds() for trial_id, beat in session.execute(running).all()}

    def stale_trial_ids(self, study_id: int, included_trial_ids: set[int], trial_id_greater_than: int) -> list[int]:
        """RDBStorage._get_stale_trial_ids among the trials in range (chosen as _get_trials chooses them): the
        running ones whose last heartbeat is older than the grace period."""
        grace = datetime.timedelta(seconds=self.grace_period if self.grace_period is not None
                                   else 2 * self.heartbeat_interval)
        trials, beats = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
        running = (sqlalchemy.select(trials.c.trial_id, beats.c.heartbeat)
                   .join(beats, beats.c.trial_id == trials.c.trial_id)
                   .where(trials.c.trial_id.in_(_in_range(study_id, included_trial_ids, trial_id_greater_than)),
                          trials.c.state == TrialState.RUNNING)
                   .order_by(trials.c.trial_id))
        with _create_scoped_session(self.scoped_session, True) as session:
            # The database's clock, as Optuna's, made naive as the stored heartbeats are (PostgreSQL's now() is not).
            now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
            return [trial_id for trial_id, heartbeat in session.execute(running).all() if now - heartbeat > grace]


def _in_range(study_id: int, included_trial_ids: set[int],
              trial_id_greater_than: int) -> sqlalchemy.Select | sqlalchemy.CompoundSelect:
    """The ids of the study's trials in `included_trial_ids` up to `trial_id_greater_than` and all after it (all of
    them where it is -1): what Optuna's cache reads again, the trials it does not hold finished."""
    trials = models.TrialModel.__table__
    in_range = sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id)
    if trial_id_greater_than < 0:
        return in_range
    # Two index searches, not one scan of all the study's trials (an OR of the two conditions made SQLite scan them,
    # 1.2 ms a query at 8,000 trials).
    included = [i for i in included_trial_ids if i <= trial_id_greater_than]
    return sqlalchemy.union(in_range.where(trials.c.trial_id > trial_id_greater_than),
                            in_range.where(trials.c.trial_id.in_(included)))


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

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's, asked only about the trials this cache does not hold finished (a finished trial stays
        finished): Optuna's query read the state of every trial of the study, twice a trial (its
        fail_stale_trials and storage.fail_lost_trials)."""
        with self._lock:
            study = self._studies.get(study_id)
            unfinished, last_finished = (set(study.unfinished_trial_ids), study.last_finished_trial_id) if study \
                else (set(), -1)
        return self._backend.stale_trial_ids(study_id, unfinished, last_finished)

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
