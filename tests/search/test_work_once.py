"""Work done once per process (issue 21, item 7): the trials read as rows, one cached storage, one sampler."""

from __future__ import annotations

import datetime
import itertools
import math
import os
import random
import time
import uuid

import optuna
import pytest
import sqlalchemy
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from hpsearch.storage import cached, driver_url, open_storage
from hpsearch.storage.optuna_private import TrialCache
from hpsearch.storage.rows import TrialRowsStorage
from tests.helpers import POSTGRES, needs_postgres


def _varied_study(storage: optuna.storages.BaseStorage, name: str = "varied") -> int:
    """A two-objective study holding every state, odd values and every kind of attribute."""
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    dists = {"width": IntDistribution(4, 16), "lr": FloatDistribution(0.01, 0.2, log=True),
             "act": CategoricalDistribution(["relu", "gelu", None])}
    params = {"width": 8, "lr": 0.05, "act": None}
    study.add_trials([
        create_trial(state=TrialState.COMPLETE, values=[0.9, math.inf], params=params, distributions=dists,
                     user_attrs={"z": 1, "config": {"b": [1, 2]}, "a": "x"}, system_attrs={"s": {"k": 1}},
                     intermediate_values={1: 0.5, 2: math.nan, 3: -math.inf}),
        create_trial(state=TrialState.PRUNED, params=params, distributions=dists, intermediate_values={1: 0.1}),
        create_trial(state=TrialState.FAIL, user_attrs={"failure": "why"}),
        create_trial(state=TrialState.WAITING, params=params, distributions=dists,
                     system_attrs={"retry_history": [2]}),
    ])
    running = study.ask()
    running.set_user_attr("run", "r1")
    running.suggest_int("width", 4, 16)
    return study._study_id


@pytest.mark.filterwarnings("ignore:Heartbeat")
@pytest.mark.parametrize("states", [None, (TrialState.COMPLETE,), (TrialState.WAITING, TrialState.RUNNING)])
def test_rows_read_the_trials_optuna_reads(tmp_path, states):
    """Every trial, value, attribute and its order as Optuna's ORM read gives them, in full and in part."""
    storage = open_storage(f"sqlite:///{tmp_path / 'varied.db'}")
    assert isinstance(storage, TrialRowsStorage)
    study_id = _varied_study(storage)
    for included, after in ((set(), -1), ({1, 2, 3}, 2), ({4}, 1)):
        fast = storage._get_trials(study_id, states, included, after)
        orm = optuna.storages.RDBStorage._get_trials(storage, study_id, states, included, after)
        assert [t.number for t in fast] == [t.number for t in orm]
        for a, b in zip(fast, orm):
            assert repr(a) == repr(b)  # nan == nan in the repr, not in FrozenTrial.__eq__
            assert [list(getattr(a, f)) for f in ("params", "user_attrs", "system_attrs", "intermediate_values")] \
                == [list(getattr(b, f)) for f in ("params", "user_attrs", "system_attrs", "intermediate_values")]


def test_rows_refuse_a_missing_study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(KeyError):
        storage._get_trials(12345, None, set(), -1)


def _numbers_and_reprs(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[int, str]]:
    return [(t.number, repr(t)) for t in trials]  # nan == nan in the repr, not in FrozenTrial.__eq__


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_the_cache_gives_what_optunas_cache_gives(tmp_path):
    """Every state filter, as trials are added and unfinished ones change: the same trials in the same order."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    ours = cached(open_storage(url))
    assert isinstance(ours, TrialCache)
    study_id = _varied_study(ours)
    theirs = optuna.storages._CachedStorage(open_storage(url))
    study = optuna.load_study(study_name="varied", storage=ours)

    def same() -> None:
        for states in (None, (TrialState.COMPLETE,), (TrialState.WAITING, TrialState.RUNNING)):
            got = ours.get_all_trials(study_id, deepcopy=False, states=states)
            assert _numbers_and_reprs(got) == _numbers_and_reprs(theirs.get_all_trials(study_id, states=states))

    same()
    study.tell(3, [0.7, 1.0])  # the running trial finishes
    new = study.ask()
    study.ask().suggest_int("width", 4, 16)
    same()
    study.tell(new, state=TrialState.FAIL)
    same()
    assert [t.number for t in ours.get_all_trials(study_id)] == [0, 1, 2, 3, 4, 5]


def test_rows_read_times_as_optuna_does_across_a_change_of_the_clocks(tmp_path):
    """Stored times are UTC, read back as local time: across St. John's changes of the clocks (at :30 past a
    UTC hour) as Optuna's builder reads them, though the read works out the offset once per hour."""
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "America/St_Johns"
    time.tzset()
    try:
        winter = datetime.datetime(2026, 1, 5, 12, tzinfo=datetime.timezone.utc).astimezone().utcoffset()
        if winter != -datetime.timedelta(hours=3, minutes=30):
            pytest.skip("this machine has no time zone data for America/St_Johns (Debian package tzdata)")
        storage = open_storage(f"sqlite:///{tmp_path / 'clocks.db'}")
        study = optuna.create_study(storage=storage, study_name="clocks")
        utc = datetime.timezone.utc
        for day, hour, minutes in itertools.product((8, 9), (4, 5, 6), (0, 10, 29, 30, 31, 59)):  # spring, Mar 8
            start = datetime.datetime(2026, 3, day, hour, minutes, 7, 123456, tzinfo=utc)
            trial = create_trial(value=0.5)
            trial.datetime_start = start.astimezone().replace(tzinfo=None)
            trial.datetime_complete = (start + datetime.timedelta(days=238)).astimezone().replace(tzinfo=None)  # Nov 1
            study.add_trial(trial)
        fast = storage._get_trials(study._study_id, None, set(), -1)
        orm = optuna.storages.RDBStorage._get_trials(storage, study._study_id, None, set(), -1)
        assert [(t.datetime_start, t.datetime_complete) for t in fast] == \
            [(t.datetime_start, t.datetime_complete) for t in orm]
        assert len({t.datetime_start - t.datetime_complete for t in fast}) > 1  # both offsets were read
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()


@pytest.mark.filterwarnings("ignore:Heartbeat")
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def test_the_cache_finds_the_stale_trials_optuna_finds(tmp_path, database):
    """A lost worker's trial is found among the trials the cache does not hold finished, whether the cache has
    read them or not: the same trials as Optuna's scan of the whole study (PostgreSQL's clock is not naive)."""
    url = f"sqlite:///{tmp_path / 'stale.db'}" if database == "sqlite" else POSTGRES
    name = f"stale-{uuid.uuid4().hex[:8]}"
    backend = open_storage(url, heartbeat=30)
    cache = TrialCache(backend)
    study = optuna.create_study(storage=cache, study_name=name)
    engine = sqlalchemy.create_engine(driver_url(url), poolclass=sqlalchemy.pool.NullPool)

    def silence(trial_ids: list[int]) -> None:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00' "
                                               f"WHERE trial_id IN ({', '.join(map(str, trial_ids))})"))

    try:
        study.add_trials([create_trial(value=0.5) for _ in range(3)])
        running = [study.ask() for _ in range(4)]  # 3 and 4 go silent, 5 beats, 6 never sent a heartbeat
        for trial in running[:3]:
            backend.record_heartbeat(trial._trial_id)
        silent = [running[0]._trial_id, running[1]._trial_id]
        silence(silent)
        assert cache._get_stale_trial_ids(study._study_id) == backend._get_stale_trial_ids(study._study_id) \
            == silent
        study.get_trials()  # the cache reads them all: 3 to 6 unfinished
        study.tell(running[2], 0.7)  # 5 finishes: a trial after the last finished one the cache read
        later = study.ask()
        backend.record_heartbeat(later._trial_id)
        silence([running[2]._trial_id, later._trial_id])
        expected = [*silent, later._trial_id]
        assert cache._get_stale_trial_ids(study._study_id) \
            == sorted(backend._get_stale_trial_ids(study._study_id)) == expected
        study.get_trials()
        assert cache._get_stale_trial_ids(study._study_id) == expected
    finally:
        optuna.delete_study(study_name=name, storage=url)
        engine.dispose()


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_the_cache_keeps_number_order_when_a_trial_comes_after_a_later_one(tmp_path):
    """On PostgreSQL a worker's new trial may be committed after a later one's, so one read sees trial 2 and
    the next trial 1: the cache gives them in number order all the same."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="late")
    study.add_trial(create_trial(value=0.5))
    first, later = study.ask(), study.ask()
    hidden = {first._trial_id}

    class NotYetCommitted(TrialRowsStorage):
        def _get_trials(self, *args, **kwargs) -> list[optuna.trial.FrozenTrial]:
            return [t for t in super()._get_trials(*args, **kwargs) if t._trial_id not in hidden]

    cache = TrialCache(NotYetCommitted(url))
    assert [t.number for t in cache.get_all_trials(study._study_id)] == [0, 2]
    hidden.clear()
    assert [t.number for t in cache.get_all_trials(study._study_id)] == [0, 1, 2]
    study.tell(later, 0.7)
    assert [t.number for t in cache.get_all_trials(study._study_id, states=(TrialState.COMPLETE,))] == [0, 2]
    assert [(t.number, t.state) for t in cache.get_all_trials(study._study_id)] == [
        (0, TrialState.COMPLETE), (1, TrialState.RUNNING), (2, TrialState.COMPLETE)]


@pytest.mark.parametrize("pruner", [{"name": "median", "n_startup_trials": 2, "min_epochs": 1},
                                    {"name": "successive_halving", "min_epochs": 1},
                                    {"name": "hyperband", "min_epochs": 1}], ids=lambda p: p["name"])
def test_the_kept_curve_view_prunes_as_one_objective_with_trials_overlapping(pruner):
    """Three trials at a time, each a few epochs behind the next, and a queued one: the view kept in step
    (new trials added, running ones caught up, finished ones left) gives the single-objective verdicts."""
    from hpsearch import record
    from hpsearch.search import curvepruning
    from hpsearch.search.samplers import make_pruner

    options = {k: v for k, v in pruner.items() if k != "name"}
    single = optuna.create_study(study_name="same", direction="maximize", pruner=make_pruner(pruner["name"], options, 6))
    double = optuna.create_study(study_name="same", directions=["maximize", "minimize"],
                                 pruner=make_pruner(pruner["name"], options, 6))
    rng = random.Random(1)
    running, verdicts = [], []
    for step in range(40):
        if step % 2 == 0:
            if step == 10:  # a queued trial, started later (a baseline, a retried copy)
                single.enqueue_trial({})
                double.enqueue_trial({})
            running.append((single.ask(), double.ask(), rng.uniform(0.02, 0.3), []))
        for one, two, rate, curve in list(running):
            curve.append(min(1.0, rate * (len(curve) + 1) + rng.uniform(-0.05, 0.05)))
            one.report(curve[-1], len(curve))
            record.curve_so_far(two, curve)
            verdicts.append(one.should_prune())
            assert curvepruning.should_prune(two) == verdicts[-1], (one.number, len(curve))
            if verdicts[-1] or len(curve) == 6:
                single.tell(one, curve[-1] if not verdicts[-1] else None,
                            state=TrialState.PRUNED if verdicts[-1] else TrialState.COMPLETE)
                double.tell(two, None if verdicts[-1] else (curve[-1], 1000),
                            state=TrialState.PRUNED if verdicts[-1] else TrialState.COMPLETE)
                running.remove((one, two, rate, curve))
    assert any(verdicts) and not all(verdicts)


def test_a_run_builds_its_sampler_once_and_reads_the_stored_trials_once(write_study, storage, monkeypatch):
    """On a study that already holds trials: one sampler (the study file's check builds its own), one full read
    of the trials (then only new and unfinished ones), baselines checked on reading the file only."""
    from hpsearch.search import run as run_module
    from hpsearch.search import studystore
    from hpsearch.search.run import RunOptions, run
    from hpsearch.studyfile.schema import load_spec

    spec = load_spec(write_study(budget={"epochs": 1, "trials": 2}, baselines=["seed002-cnn-q9"]))
    run(spec, storage, RunOptions(device="cpu", n_trials=1))
    built, full_reads = [], []
    for module in (run_module, studystore):
        monkeypatch.setattr(module, "make_sampler", lambda *a, made=module.make_sampler: built.append(a) or made(*a))
    read = TrialRowsStorage._get_trials

    def counted(self, study_id, states, included_trial_ids, trial_id_greater_than):
        full_reads.append(trial_id_greater_than == -1)
        return read(self, study_id, states, included_trial_ids, trial_id_greater_than)

    monkeypatch.setattr(TrialRowsStorage, "_get_trials", counted)
    monkeypatch.setattr(run_module, "fit_problem", lambda *a: pytest.fail("checked again"))
    assert len(run(spec, storage, RunOptions(device="cpu", n_trials=2)).trials) == 3
    assert len(built) == 1 and sum(full_reads) == 1


@pytest.mark.parametrize("states", [None, (TrialState.RUNNING,)])
def test_rows_read_while_workers_write_are_the_trials_of_the_first_query(tmp_path, states):
    """Another worker creates a trial and finishes one between the trials' query and their child rows' (each
    query sees what is committed by then): the read is the trials the first query chose, each with its rows."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="race")
    running = study.ask()
    running.suggest_int("width", 4, 16)
    other = optuna.load_study(study_name="race", storage=optuna.storages.RDBStorage(url))
    wrote: list[bool] = []

    def another_worker_writes(conn, cursor, statement, *args):
        if "FROM trial_params" in statement and not wrote:  # the trials' rows are read by now
            wrote.append(True)
            other.tell(running.number, 0.5)
            other.ask().suggest_int("width", 4, 16)

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", another_worker_writes)
    [trial] = storage._get_trials(study._study_id, states, set(), -1)
    assert wrote and (trial.number, trial.state, trial.params) == (0, TrialState.RUNNING, running.params)


@needs_postgres
@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_rows_read_the_trials_optuna_reads_on_postgresql():
    """PostgreSQL's driver gives times as datetimes, not text; its ORM read has no set attribute order."""
    name = f"varied-{uuid.uuid4().hex[:8]}"
    storage = open_storage(POSTGRES)
    study_id = _varied_study(storage, name)
    ids = [t._trial_id for t in storage.get_all_trials(study_id)]
    try:
        for states, (included, after) in itertools.product(
                (None, (TrialState.COMPLETE,), (TrialState.WAITING, TrialState.RUNNING)),
                ((set(), -1), (set(ids[:3]), ids[1]), ({ids[3]}, ids[0]))):  # as on SQLite
            fast = storage._get_trials(study_id, states, included, after)
            orm = optuna.storages.RDBStorage._get_trials(storage, study_id, states, included, after)
            assert [t.number for t in fast] == [t.number for t in orm]
            for a, b in zip(fast, orm):
                assert (a.state, a.datetime_start, a.datetime_complete, a.params, a.distributions, a.user_attrs,
                        a.system_attrs) == (b.state, b.datetime_start, b.datetime_complete, b.params,
                                            b.distributions, b.user_attrs, b.system_attrs)
                assert repr((a.values, a.intermediate_values)) == repr((b.values, b.intermediate_values))
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES)
