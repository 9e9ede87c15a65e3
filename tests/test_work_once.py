"""Work done once per process (issue 21, item 7): the trials read as rows, one cached storage, one sampler."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.storage import TrialRowsStorage, open_storage


def _varied_study(storage: optuna.storages.BaseStorage) -> int:
    """A two-objective study holding every state, odd values and every kind of attribute."""
    study = optuna.create_study(storage=storage, study_name="varied", directions=["maximize", "minimize"])
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
