"""How a process reads a study's trials from an RDB storage: six plain queries of Optuna's tables, built into the
FrozenTrials Optuna's own read makes of ORM objects, in a fraction of its time. Optuna's names it needs come from
optuna_private.py.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import json
from collections.abc import Callable, Container, Iterator

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from hpsearch.storage import optuna_private as private


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
    """Optuna's reading of a stored time (its TrialModel.datetime_start: naive UTC to naive local time),
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
                                 private.value_from_stored(value, private.VALUE_TYPES[value_type])))


def _add_intermediate_values(trials: dict[int, _TrialRows], rows: list[sqlalchemy.Row]) -> None:
    for trial_id, step, value, value_type in rows:
        if (trial := trials.get(trial_id)) is not None:
            trial.intermediate_values[step] = private.intermediate_value_from_stored(
                value, private.INTERMEDIATE_VALUE_TYPES[value_type])


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


# Each child table: the table, the columns read (trial_id first), the order, and what adds its rows to their
# trials. The order is the one its unique index gives SQLite's ORM read (so attributes come back in the same
# order there; PostgreSQL's ORM read has no set order); params in Optuna's own order, param_id.
_CHILDREN = (
    (private.PARAMS, ("trial_id", "param_name", "param_value", "distribution_json"), "param_id", _add_params),
    (private.VALUES, ("trial_id", "objective", "value", "value_type"), "objective", _add_values),
    (private.INTERMEDIATE_VALUES, ("trial_id", "step", "intermediate_value", "intermediate_value_type"), "step",
     _add_intermediate_values),
    (private.USER_ATTRIBUTES, ("trial_id", "key", "value_json"), "key", _attributes_adder("user_attrs")),
    (private.SYSTEM_ATTRIBUTES, ("trial_id", "key", "value_json"), "key", _attributes_adder("system_attrs")),
)
# What the reader leaves of each table of trial rows, and why: the study is the query's filter, a child row's own
# id is in no FrozenTrial, and the heartbeats are read by stale_trial_ids alone.
_LEFT = {"trials": {"study_id"}, "trial_params": {"param_id"}, "trial_values": {"trial_value_id"},
         "trial_intermediate_values": {"trial_intermediate_value_id"},
         "trial_user_attributes": {"trial_user_attribute_id"}, "trial_system_attributes": {"trial_system_attribute_id"},
         "trial_heartbeats": {"trial_heartbeat_id", "trial_id", "heartbeat"}}


def unread_columns(tables: list[sqlalchemy.Table] | None = None) -> list[str]:
    """The columns of Optuna's tables of trial rows (`tables`: all of them) that the reader neither reads nor leaves
    knowingly (_LEFT), as table.column: a release that adds one (or a table) would lose it from every trial read as
    rows."""
    read = {private.TRIALS.name: set(_TRIAL_COLUMNS), **{table.name: set(columns) for table, columns, *_ in _CHILDREN}}
    return [f"{table.name}.{column.name}" for table in (private.trial_tables() if tables is None else tables)
            for column in table.c if column.name not in read.get(table.name, set()) | _LEFT.get(table.name, set())]


UNREAD_COLUMNS = unread_columns()  # none on the Optuna versions pyproject.toml pins


class TrialRowsStorage(private.RDBStorageHooks):
    """Optuna's RDB storage, its trials read as plain rows instead of ORM objects.

    Optuna's cache in front of an RDB storage reads every trial once per process, then only new and
    unfinished ones; that first read went through SQLAlchemy's ORM at 1.3-1.7 ms a trial, over 10 s
    before a run on a study of 8,000 trials could start its first. The same six queries read as rows
    take a fraction of that (bench/big_study.py). Same contract as Optuna's read: the study's
    trials in `states`, those of `included_trial_ids` up to `trial_id_greater_than` and all after it, in
    trial_id order; the same FrozenTrials (tests/search/test_work_once.py compares them). Where Optuna's
    tables hold a column the reader does not know (unread_columns), Optuna's own read keeps it.
    """

    def read_trials(self, study_id: int, states: Container[TrialState] | None, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        if UNREAD_COLUMNS:
            return super().read_trials(study_id, states, included_trial_ids, trial_id_greater_than)
        trials = private.TRIALS
        in_range = _in_range(study_id, included_trial_ids, trial_id_greater_than)
        chosen = sqlalchemy.select(*(_column(trials, c) for c in _TRIAL_COLUMNS)).where(trials.c.trial_id.in_(in_range))
        if states is not None:
            chosen = chosen.where(trials.c.state.in_(list(states)))
        with self.session() as session, _collector_paused():
            self.check_study(session, study_id)
            clock = _LocalClock()
            read = {row[0]: _TrialRows(row, clock)
                    for row in session.execute(chosen.order_by(trials.c.trial_id)).all()}
            # Each query sees what other workers committed before it started: the child rows are read for the
            # trials in range whatever their state now, and kept for those the first query chose.
            for table, columns, order, add in _CHILDREN:
                add(read, session.execute(sqlalchemy.select(*(_column(table, c) for c in columns))
                                          .where(table.c.trial_id.in_(in_range))
                                          .order_by(table.c.trial_id, table.c[order])).all())
            return [trial.frozen() for trial in read.values()]

    def trials_in_brief(self, study_id: int, user_keys: Container[str], system_keys: Container[str]) -> list[FrozenTrial]:
        """Every trial of the study as an overview reads it (`hpsearch status`): its number, state, times and
        values, and of its attributes only those named; an unfinished trial (running or queued) with every
        attribute and its curve. No parameters. A few rows a trial, where read_trials reads all it stores."""
        trials = private.TRIALS
        in_study = sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id)
        chosen = sqlalchemy.select(*(_column(trials, c) for c in _TRIAL_COLUMNS)).where(trials.c.study_id == study_id)
        named = {private.USER_ATTRIBUTES.name: list(user_keys), private.SYSTEM_ATTRIBUTES.name: list(system_keys)}
        with self.session() as session, _collector_paused():
            self.check_study(session, study_id)
            clock = _LocalClock()
            read = {row[0]: _TrialRows(row, clock)
                    for row in session.execute(chosen.order_by(trials.c.trial_id)).all()}
            unfinished = [trial_id for trial_id, trial in read.items() if not trial.state.is_finished()]
            for table, columns, order, add in _CHILDREN:
                if table is private.PARAMS:
                    continue
                if table is private.INTERMEDIATE_VALUES:
                    where = table.c.trial_id.in_(unfinished)
                elif table.name in named:
                    where = sqlalchemy.and_(table.c.trial_id.in_(in_study), sqlalchemy.or_(
                        table.c.key.in_(named[table.name]), table.c.trial_id.in_(unfinished)))
                else:
                    where = table.c.trial_id.in_(in_study)
                add(read, session.execute(sqlalchemy.select(*(_column(table, c) for c in columns)).where(where)
                                          .order_by(table.c.trial_id, table.c[order])).all())
            return [trial.frozen() for trial in read.values()]

    def heartbeat_ages(self, study_id: int) -> dict[int, float]:
        """Seconds since each running trial of the study last sent a heartbeat, by trial id, on the database's
        clock (as Optuna's stale check reads it)."""
        trials, beats = private.TRIALS, private.HEARTBEATS
        running = (sqlalchemy.select(trials.c.trial_id, beats.c.heartbeat)
                   .join(beats, beats.c.trial_id == trials.c.trial_id)
                   .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING))
        with self.session(ignore_integrity_error=True) as session:
            now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
            return {trial_id: (now - beat).total_seconds() for trial_id, beat in session.execute(running).all()}

    def stale_trial_ids(self, study_id: int, included_trial_ids: set[int], trial_id_greater_than: int) -> list[int]:
        """Optuna's stale-trial query among the trials in range (chosen as read_trials chooses them): the running
        ones whose last heartbeat is older than the grace period."""
        grace = datetime.timedelta(seconds=self.grace_period_s())
        trials, beats = private.TRIALS, private.HEARTBEATS
        running = (sqlalchemy.select(trials.c.trial_id, beats.c.heartbeat)
                   .join(beats, beats.c.trial_id == trials.c.trial_id)
                   .where(trials.c.trial_id.in_(_in_range(study_id, included_trial_ids, trial_id_greater_than)),
                          trials.c.state == TrialState.RUNNING)
                   .order_by(trials.c.trial_id))
        with self.session(ignore_integrity_error=True) as session:  # as Optuna's own query
            # The database's clock, as Optuna's, made naive as the stored heartbeats are (PostgreSQL's now() is not).
            now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
            return [trial_id for trial_id, heartbeat in session.execute(running).all() if now - heartbeat > grace]


def _in_range(study_id: int, included_trial_ids: set[int],
              trial_id_greater_than: int) -> sqlalchemy.Select | sqlalchemy.CompoundSelect:
    """The ids of the study's trials in `included_trial_ids` up to `trial_id_greater_than` and all after it (all of
    them where it is -1): what Optuna's cache reads again, the trials it does not hold finished."""
    trials = private.TRIALS
    in_range = sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id)
    if trial_id_greater_than < 0:
        return in_range
    # Two index searches, not one scan of all the study's trials (an OR of the two conditions made SQLite scan them,
    # 1.2 ms a query at 8,000 trials).
    included = [i for i in included_trial_ids if i <= trial_id_greater_than]
    return sqlalchemy.union(in_range.where(trials.c.trial_id > trial_id_greater_than),
                            in_range.where(trials.c.trial_id.in_(included)))


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
