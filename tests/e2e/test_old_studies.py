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
