"""Studies stored by an earlier hpsearch (tests/fixtures: made with commit ec58529's code, weights in the
old layout's old-artifacts/ beside old.db) open, export and train again to their recorded numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from safetensors.torch import load_file

from hpsearch.results.artifacts import load_trial_state_dict
from tests.helpers import invoke

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture
def old_storage(tmp_path):
    shutil.copy(FIXTURES / "old.db", tmp_path / "old.db")
    shutil.copytree(FIXTURES / "old-artifacts", tmp_path / "old-artifacts")
    return f"sqlite:///{tmp_path / 'old.db'}"


def trained_again(config: str, out: str, tmp_path: Path) -> dict:
    result = invoke("train", "--config", config, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert ": identical)" in result.stdout
    (seed,) = json.loads((tmp_path / out / "results.json").read_text())["seeds"]
    return seed


@pytest.mark.parametrize("study, number", [("tiny", 0), ("tiny", 1), ("tinyxfer", 0)])
def test_an_old_studys_trial_exports_and_trains_to_its_recorded_numbers(old_storage, tmp_path, study, number):
    """The baseline #0 (its weights file left out of the fixture), the sampled #1 (weights kept), and the
    transfer trial that started from #1's kept weights."""
    trial = optuna.load_study(study_name=study, storage=old_storage).trials[number]
    result = invoke("export", "--study", study, "--storage", old_storage, "--trial", str(number), "-o", "t.yaml")
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "t.yaml").read_text())
    if study == "tinyxfer":
        assert config["init"] == {"study": "tiny", "trial": 1, "storage": old_storage}
    again = trained_again("t.yaml", "again", tmp_path)
    assert (again["val_accuracy"], again["test_accuracy"]) == (trial.value, trial.user_attrs["test_accuracy"])
    if study == "tiny" and number == 1:  # the same weights
        stored = load_trial_state_dict(old_storage, study, number)
        retrained = load_file(str(tmp_path / "again" / "seed-0.safetensors"))
        # Bit for bit on the CPU that made the fixture (an AMD EPYC); another CPU's float kernels may round the
        # last bit differently (up to 1.2e-7 on an Intel Xeon, with the same accuracies to the last digit).
        assert stored.keys() == retrained.keys()
        torch.testing.assert_close(retrained, stored, rtol=0, atol=1e-6)


def test_best_reads_an_old_study(old_storage):
    result = invoke("best", "--study", "tiny", "--storage", old_storage)
    assert result.exit_code == 0, result.output
    assert "best trial #0 (baseline seed002-cnn-q9)" in result.stdout and "0.9667" in result.stdout
    assert "stop rule: not recorded: stored by an older hpsearch, whose runs stopped on the target's metric" \
        in result.stdout
    report = invoke("report", "--study", "tiny", "--storage", old_storage)
    assert report.exit_code == 0 and "- Stop rule: not recorded: stored by an older hpsearch" in report.stdout


def test_an_old_study_runs_on_and_records_what_decides_its_results(old_storage, tmp_path):
    """Made before studies recorded their epochs' and parameters' record: its next run is not refused for lacking
    it, records it, and what was known then (its epochs, its trials' distributions) is compared already."""
    body = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    args = ["--storage", old_storage, "--device", "cpu", "--n-trials", "1"]
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump({**body, "budget": {"epochs": 3, "trials": 2}}))
    result = invoke("run", "--study", str(longer), *args)
    assert result.exit_code == 2 and "changed since its 3 trials ran: budget.epochs 2 -> 3;" in result.stderr
    unlogged = tmp_path / "unlogged.yaml"
    unlogged.write_text(yaml.safe_dump({**body, "space": {**body["space"], "lr": {"float": [0.02, 0.1]}}}))
    result = invoke("run", "--study", str(unlogged), *args)
    assert result.exit_code == 2 and "searched space.lr as float [0.02, 0.1] log, the file says float [0.02, 0.1]:" \
        in result.stderr
    result = invoke("run", "--study", str(FIXTURES / "tiny.yaml"), *args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny", storage=old_storage)
    assert len(study.trials) == 4 and "accepted_changes" not in study.user_attrs
    made_with = study.user_attrs["made_with"]
    assert made_with["budget.epochs"] == 2 and made_with["dataset classes"] == [str(n) for n in range(10)]
    assert made_with["space.lr"] == {"name": "FloatDistribution",
                                     "attributes": {"low": 0.02, "high": 0.1, "step": None, "log": True}}
    wider = tmp_path / "wider.yaml"  # a change only the record tells: Optuna would take it
    wider.write_text(yaml.safe_dump({**body, "space": {**body["space"], "width": {"int": [4, 16]}}}))
    result = invoke("run", "--study", str(wider), *args)
    assert result.exit_code == 2 and "changed since its 4 trials ran: space.width int [4, 8] -> int [4, 16];" \
        in result.stderr
