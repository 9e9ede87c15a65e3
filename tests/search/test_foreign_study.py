"""A same-named study that plain Optuna made (another direction, other parameters, values that are not
accuracies) is recognised by every command, which says so in one line and leaves it untouched."""

from __future__ import annotations

import optuna
import pytest
from click.testing import CliRunner

from hpsearch.cli import main


@pytest.fixture
def foreign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    study = optuna.create_study(study_name="digits-quick", storage=storage, direction="minimize")
    study.optimize(lambda t: t.suggest_float("x", 0, 300) ** 2, n_trials=3)
    return storage


@pytest.mark.parametrize("command", [["best"], ["report"], ["export", "-o", "t.yaml"], ["dashboard"],
                                     ["run", "--n-trials", "1"], ["confirm"]])
def test_every_command_refuses_a_study_hpsearch_did_not_make(foreign, command):
    result = CliRunner().invoke(main, [command[0], "--study", "digits-quick", "--storage", foreign, *command[1:]])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "was not made by hpsearch" in lines[0] and "another name" in lines[0], result.output
    study = optuna.load_study(study_name="digits-quick", storage=foreign)
    assert len(study.trials) == 3 and study.direction == optuna.study.StudyDirection.MINIMIZE
