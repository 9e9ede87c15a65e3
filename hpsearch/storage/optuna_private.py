"""Every private name of Optuna that hpsearch uses, and the one module that uses them
(tests/test_storage_adapter.py fails on any other).

A private name may change in any release without notice, so pyproject.toml pins Optuna to the minor versions
in TESTED_OPTUNA, and a storage opened under another says so (opening.py). Before widening the pin, run
tests/test_storage_adapter.py, tests/search/test_work_once.py and tests/test_storage*.py on the new version: they
compare the row reader and the cache below with Optuna's own and check that the reader knows every column of
Optuna's trial tables.

The names, where they come from and what for:

- `optuna.storages._rdb.models`: the tables of a study's trials (TrialModel, TrialParamModel, TrialValueModel,
  TrialIntermediateValueModel, TrialUserAttributeModel, TrialSystemAttributeModel, TrialHeartbeatModel, and
  BaseModel.metadata to find every table of trial rows), how a value is stored (TrialValueType and
  stored_repr_to_value, TrialIntermediateValueType and stored_repr_to_intermediate_value), and
  StudyModel.find_or_raise_by_id: what the row reader (rows.py) reads.
- `optuna.storages._rdb.storage._create_scoped_session`, with RDBStorage's undocumented `scoped_session`,
  `grace_period` and `heartbeat_interval`: the reader's sessions, and the stale-trial query's grace period.
- RDBStorage's constructor skipped for a reader (RDBStorageHooks.for_reading): the attributes it sets (`url`,
  `engine_kwargs`, `engine`, `scoped_session`, the heartbeat's and `skip_compatibility_check`), its
  `_fill_storage_url_template`, and its `_version_manager`, made on first use from
  `optuna.storages._rdb.storage._VersionManager`; the tables' alembic revision (`alembic_version.version_num`).
- `RDBStorage._get_trials`: overridden, so that Optuna's cache reads trials through the row reader.
- `optuna.storages._cached_storage._CachedStorage`, and of it `_add_trials_to_cache`,
  `_read_trials_from_remote_storage`, `_get_stale_trial_ids`, `_lock`, `_backend` and `_studies` (each study's
  `trials`, `unfinished_trial_ids`, `last_finished_trial_id`): TrialCache.
- `optuna.storages.get_storage` ("only for internal usage"): Optuna's own cache, for a storage that is not RDB.
- `Study._storage`, `Study._study_id`, `Trial._trial_id`, `FrozenTrial._trial_id`, and a storage's
  `_get_stale_trial_ids`: what hpsearch reads or writes of one trial or study without reading them all.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Container

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session, _VersionManager
from optuna.trial import FrozenTrial, TrialState

TESTED_OPTUNA = ("5.1",)  # the minor versions the tests ran on; pyproject.toml's range (a test keeps them equal)
SCHEMA_REVISION = "v3.2.0.a"  # the alembic revision of the tables these Optuna versions make (a test: Optuna's head)


def untested_optuna() -> str | None:
    """The installed Optuna's version where the tests never ran on it, else None."""
    version = optuna.__version__
    return None if ".".join(version.split(".")[:2]) in TESTED_OPTUNA else version


# The tables of a study's trials: the row reader's queries.
TRIALS = models.TrialModel.__table__
PARAMS = models.TrialParamModel.__table__
VALUES = models.TrialValueModel.__table__
INTERMEDIATE_VALUES = models.TrialIntermediateValueModel.__table__
USER_ATTRIBUTES = models.TrialUserAttributeModel.__table__
SYSTEM_ATTRIBUTES = models.TrialSystemAttributeModel.__table__
HEARTBEATS = models.TrialHeartbeatModel.__table__

# How a (intermediate) value is stored: the name of its type, and the float it stands for.
VALUE_TYPES = models.TrialValueModel.TrialValueType.__members__
value_from_stored = models.TrialValueModel.stored_repr_to_value
INTERMEDIATE_VALUE_TYPES = models.TrialIntermediateValueModel.TrialIntermediateValueType.__members__
intermediate_value_from_stored = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value


def trial_tables() -> list[sqlalchemy.Table]:
    """Every table of Optuna's schema that holds rows of trials (a trial_id column), the trials' own first."""
    return [table for table in models.BaseModel.metadata.sorted_tables if "trial_id" in table.c]


class RDBStorageHooks(optuna.storages.RDBStorage):
    """Optuna's RDB storage, with what a reader of its tables needs under names of hpsearch's: its trial reads go
    to read_trials (Optuna's _get_trials, which its cache calls), a session, the grace period of a heartbeat; and
    a light opening for processes that only read (for_reading)."""

    @classmethod
    def for_reading(cls, url: str, engine_kwargs: dict, **options) -> RDBStorageHooks:
        """The storage a process that only reads opens: the same object as the constructor's, without its
        creating missing tables and checking their schema where one query shows the tables are at this Optuna's
        revision. The check imports alembic: 0.15 s of `hpsearch status`'s 1 s (bench/README.md); the version
        manager behind it is made if anything asks for it. Tables at another revision, or none, go through
        the constructor, which says what to do."""
        url = cls._fill_storage_url_template(url)
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
        with engine.connect() as connection:
            stamped = (connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalars().all()
                       if sqlalchemy.inspect(connection).has_table("alembic_version") else [])
        if stamped != [SCHEMA_REVISION]:
            engine.dispose()
            return cls(url, engine_kwargs=engine_kwargs, **options)
        storage = cls.__new__(cls)
        callback = options.get("heartbeat_stale_trial_callback")
        storage.__dict__.update(
            url=url, engine_kwargs=engine_kwargs, skip_compatibility_check=False,
            heartbeat_interval=options.get("heartbeat_interval"), grace_period=options.get("grace_period"),
            heartbeat_stale_trial_callback=callback, failed_trial_callback=callback, engine=engine,
            scoped_session=sqlalchemy.orm.scoped_session(sqlalchemy.orm.sessionmaker(bind=engine)))
        return storage

    def __getattr__(self, name: str):
        if name == "_version_manager":  # left by for_reading until asked for
            self._version_manager = _VersionManager(self.url, self.engine, self.scoped_session)
            return self._version_manager
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _get_trials(self, study_id: int, states: Container[TrialState] | None, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        return self.read_trials(study_id, states, included_trial_ids, trial_id_greater_than)

    def read_trials(self, study_id: int, states: Container[TrialState] | None, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        """The study's trials in `states`, those of `included_trial_ids` up to `trial_id_greater_than` and all
        after it, in trial_id order: Optuna's own read, through SQLAlchemy's ORM."""
        return super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)

    def session(self,
                ignore_integrity_error: bool = False) -> contextlib.AbstractContextManager[sqlalchemy.orm.Session]:
        """A session of this storage, as Optuna's storage opens one: committed at the end, rolled back on a database
        error (turned into Optuna's StorageInternalError)."""
        return _create_scoped_session(self.scoped_session, ignore_integrity_error)

    @staticmethod
    def check_study(session: sqlalchemy.orm.Session, study_id: int) -> None:
        """KeyError for a study that is not there, as Optuna's reads raise it."""
        models.StudyModel.find_or_raise_by_id(study_id, session)

    def grace_period_s(self) -> int:
        """How long a running trial's heartbeat may be silent before it counts as lost (RDBStorage's default)."""
        return self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval


class TrialCache(_CachedStorage):
    """Optuna's cache in front of an RDB storage, its trials also kept in a list in number order.

    Optuna's cache sorts all of a study's trials by number on every get_all_trials, several times a trial (the
    run's count, Optuna's ask, the pruner): on a study of 8,000 trials that was most of what a run's reads cost
    beyond the first (bench/big_study.py). Trials arrive in trial_id order, which is number order within a study,
    so the list only grows at its end or has a trial replaced in place; when one arrives out of order (a
    worker's trial committed after a later one, on PostgreSQL) the list is sorted again. Kept because it pays:
    a run's later reads took 1.31 times as long through Optuna's own cache on a study of 2,000 trials, and 2.07
    times on 8,000 (bench/trial_cache.py, bench/README.md).
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
        fail_stale_trials and search/retries.fail_lost_trials). The backend's stale_trial_ids answers."""
        with self._lock:
            study = self._studies.get(study_id)
            unfinished, last_finished = (set(study.unfinished_trial_ids), study.last_finished_trial_id) if study \
                else (set(), -1)
        return self._backend.stale_trial_ids(study_id, unfinished, last_finished)

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            self._in_order.pop(study_id, None)
        super().delete_study(study_id)


def optuna_cache(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """What Optuna puts in front of a storage a Study is made on (its cache, for an RDB storage)."""
    return optuna.storages.get_storage(storage)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes through (Optuna's cache, for an RDB storage)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage: what the storage's study methods take."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The trial's id in its storage (not its number): what the storage's methods take."""
    return trial._trial_id


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """One trial of the study, read alone (study.trials reads them all)."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def trial_system_attrs(trial: optuna.Trial) -> dict:
    """A running trial's system attributes, read from its row alone (Optuna's Trial shows none)."""
    return trial.storage.get_trial_system_attrs(trial._trial_id)


def study_system_attrs(study: optuna.Study) -> dict:
    """The study's system attributes (Optuna's Study shows none)."""
    return study._storage.get_study_system_attrs(study._study_id)


def set_study_system_attr(study: optuna.Study, key: str, value: object) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def catch_up(view: optuna.Study, shown: FrozenTrial, now: FrozenTrial) -> None:
    """Write onto `shown`, an unfinished trial of the in-memory study `view`, what differs in `now`: its intermediate
    values, system attributes and state (a copy kept in step without rebuilding it: search/curvepruning.py)."""
    storage, trial_id = view._storage, shown._trial_id
    for step, value in now.intermediate_values.items():
        if shown.intermediate_values.get(step) != value:
            storage.set_trial_intermediate_value(trial_id, step, value)
    for key, value in now.system_attrs.items():
        if shown.system_attrs.get(key) != value:
            storage.set_trial_system_attr(trial_id, key, value)
    if now.state != shown.state:
        if now.state == TrialState.RUNNING:
            storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        else:
            storage.set_trial_state_values(trial_id, now.state, now.values)


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """The study's running trials whose heartbeat is older than the storage's grace period; none where the
    storage keeps no heartbeats."""
    storage = study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is None:
        return []
    return storage._get_stale_trial_ids(study._study_id)
