"""The commands that only read (`best`, `report` as text, `studies`, `params`, `baselines`, `export` without
weights) never import torch: torch alone takes seconds to import, and these answer a question about a study. A
shipped study's name resolves to its file, which is read as well (and reading it builds nothing); a name of no
file reads the storage alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures"

# Runs each command in one fresh interpreter and reports, per command, its exit code and whether torch was
# imported by then (the commands run in order, so a later one is only judged if the earlier ones stayed light).
PROBE = """
import json, sys
from click.testing import CliRunner
from hpsearch.cli import main
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(main, args)
    results.append([args[0], result.exit_code, "torch" in sys.modules, result.output])
print(json.dumps(results))
"""


def probe(commands: list[list[str]], folder: Path) -> list:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands)], cwd=folder, capture_output=True,
                          text=True, check=True, timeout=300)
    return json.loads(done.stdout)


@pytest.fixture
def digits_quick(tmp_path: Path) -> str:
    """A storage holding one trial of the shipped study digits-quick (its first baseline: one trial is left to
    the run, and two baselines wait for it)."""
    from hpsearch import api

    url = f"sqlite:///{tmp_path / 'quick.db'}"
    assert api.run("digits-quick", storage=url, n_trials=1, device="cpu").summary["complete"] == 1
    return url


def test_reading_a_shipped_study_imports_no_torch(digits_quick, tmp_path):
    storage = ["--study", "digits-quick", "--storage", digits_quick]
    commands = [["studies"], ["params"], ["baselines"], ["best", *storage], ["report", *storage],
                ["export", *storage, "-o", "t.yaml", "--no-weights"]]
    results = probe(commands, tmp_path)
    assert [(name, code) for name, code, _, _ in results] == [(args[0], 0) for args in commands], results
    assert [name for name, _, torch_loaded, _ in results if torch_loaded] == []
    report = results[4][3]
    assert "seed002-cnn-q9" in report and "seed003-tricks" in report  # the study file's baselines, read from it
    assert (tmp_path / "t.yaml").is_file() and not (tmp_path / "t.safetensors").exists()


def test_reading_a_study_of_no_file_imports_no_torch(tmp_path):
    shutil.copy(FIXTURES / "old.db", tmp_path / "old.db")
    storage = ["--study", "tiny", "--storage", f"sqlite:///{tmp_path / 'old.db'}"]
    commands = [["best", *storage], ["report", *storage], ["export", *storage, "-o", "t.yaml"]]
    results = probe(commands, tmp_path)
    assert [(name, code) for name, code, _, _ in results] == [(args[0], 0) for args in commands], results
    assert [name for name, _, torch_loaded, _ in results if torch_loaded] == []
    assert (tmp_path / "t.yaml").is_file()
