"""Trained weights as Optuna artifacts: the best K kept, the rest removed, loadable into the rebuilt model."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpsearch import trialrecord as A
from hpsearch.errors import HpsearchError
from hpsearch.results.artifacts import artifact_dir, load_trial_state_dict, trial_weights_path
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training import space
from hpsearch.training.models import build_model
from hpsearch.training.train import evaluate


def test_the_best_two_completed_trials_keep_their_weights(shared_study):
    url, _, study = shared_study
    completed = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (-t.value, t.number))
    assert len(completed) >= 3, [t.state for t in study.trials]
    kept = [t for t in completed if trial_weights_path(url, t) is not None]
    assert kept == completed[:2]
    assert len(list(artifact_dir(url).iterdir())) == 2  # dropped trials' files are gone: disk use stays bounded
    for trial in kept:
        (meta,) = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        assert meta.artifact_id == trial.user_attrs[A.WEIGHTS] and meta.filename == f"trial-{trial.number}.safetensors"
    assert not any(A.WEIGHTS in t.user_attrs for t in study.trials if t.state != TrialState.COMPLETE)


def test_stored_weights_rebuild_the_trial_and_its_test_accuracy(shared_study):
    url, _, study = shared_study
    best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    weights = load_trial_state_dict(url, "shared-digits")  # "best"
    assert all(t.device.type == "cpu" for t in weights.values())
    digits = data.load(DatasetSpec("digits", validation=0.15, test=0.2), torch.device("cpu"))
    model = build_model(space.model_config(best.user_attrs["config"], digits.shape, digits.num_classes))
    model.load_state_dict(weights)  # strict: every key and shape matches
    assert evaluate(model, digits, digits.test_x, digits.test_y) == best.user_attrs["test_accuracy"]


def test_missing_weights_name_the_fix(shared_study):
    url, _, study = shared_study
    pruned = next(t for t in study.trials if t.state == TrialState.PRUNED)
    with pytest.raises(HpsearchError, match=rf"trial #{pruned.number} .* no stored weights.*hpsearch export"):
        load_trial_state_dict(url, "shared-digits", pruned.number)
    with pytest.raises(HpsearchError, match="no study named 'nope'"):
        load_trial_state_dict(url, "nope")
    with pytest.raises(HpsearchError, match="give a trial number"):
        load_trial_state_dict(url, "shared-digits", "worst")


def test_keep_weights_zero_keeps_none(write_study, storage, tmp_path):
    study = run(load_spec(write_study(budget={"epochs": 1, "trials": 1})), storage, RunOptions(device="cpu", keep_weights=0))
    assert study.trials[0].state == TrialState.COMPLETE and A.WEIGHTS not in study.trials[0].user_attrs
    assert not artifact_dir(storage).exists()
    with pytest.raises(HpsearchError, match="no completed trial with stored weights.*hpsearch run"):
        load_trial_state_dict(storage, "tiny-digits")


def test_where_the_artifacts_go(tmp_path, monkeypatch):
    assert artifact_dir(f"sqlite:///{tmp_path}/runs/x.db") == tmp_path / "runs" / "x-files" / "artifacts"
    assert artifact_dir("sqlite:///hpsearch.db").as_posix() == "hpsearch-files/artifacts"
    assert artifact_dir("postgresql://u:p@db/hp").as_posix() == "hpsearch-files/artifacts"
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", "/srv/weights")
    assert artifact_dir("postgresql://u:p@db/hp").as_posix() == "/srv/weights"
