"""Trained weights as Optuna artifacts: the best K kept, the rest removed, loadable into the rebuilt model."""

from __future__ import annotations

import json
import random

import optuna
import pytest
import torch
from click.testing import CliRunner
from optuna.trial import TrialState
from safetensors.torch import save_file

from hpsearch.record import keys as A
from hpsearch.cli import main
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.results.artifacts import (UnreadableWeights, artifact_dir, load_state_dict_file, load_trial_state_dict,
                                        trial_weights_path)
from hpsearch.results.export import weights_record
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training import space
from hpsearch.training.models import build_model
from hpsearch.training.train import evaluate
from hpsearch.record import TrialRecord


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


def weights_file(path, metadata: dict[str, str]) -> None:
    """A weights file with exactly this header (save_state_dict would write its own keys)."""
    save_file({"0.weight": torch.ones(2, 2)}, str(path), metadata=metadata)


GOOD_RECORD = TrialRecord({"blocks": 1, "convs_per_block": 1, "width": 4}, DatasetSpec("digits").recorded(), 1, 0,
                          input_shape=(1, 8, 8), classes=10).config()


@pytest.mark.parametrize("record, problem", [
    ("{not json", "record: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                  "(char 1)); the file is damaged or another program's"),
    ("[1, 2]", "record: must be a mapping, as hpsearch writes it"),
    (json.dumps({**GOOD_RECORD, "params": {"family": "nope"}}), "params.family: 'nope' must be one of "),
    (json.dumps({**GOOD_RECORD, "params": {"width": "wide"}}), "params.width: 'wide' must be an integer"),
    (json.dumps({**GOOD_RECORD, "epochs": "one"}), "epochs: must be a whole number >= 1, got 'one'"),
])
def test_a_damaged_or_foreign_weights_header_is_one_line_naming_the_file(record, problem, tmp_path, write_study):
    path = tmp_path / "source.safetensors"
    weights_file(path, {"record": record})
    with pytest.raises(SpecError) as raised:
        weights_record(path)
    assert str(raised.value).startswith(f"{path} (its header): {problem}")
    study = write_study(init={"weights": str(path)}, space={}, fixed={}, budget={"epochs": 1, "trials": 1})
    result = CliRunner().invoke(main, ["run", "--study", str(study), "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {str(raised.value)}"]  # one problem, one line


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "keys not JSON", "keys not a list"])
def test_a_damaged_weights_file_is_one_line_naming_it(damage, tmp_path):
    path = tmp_path / "trial.safetensors"
    weights_file(path, {"keys": {"keys not JSON": "[oops", "keys not a list": '{"0.weight": 1}'}.get(damage, "[]")})
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "random bytes":
        path.write_bytes(random.Random(0).randbytes(512))
    with pytest.raises(UnreadableWeights, match=rf"^{path} is not a safetensors file hpsearch can read \(.+\): it is "
                                               r"damaged, or not safetensors; replace it"):
        load_state_dict_file(path)
