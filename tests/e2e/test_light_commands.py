"""The commands that only read (`best`, `report` as text, `studies`, `params`, `baselines`, `export` without
weights) never import torch: torch alone takes seconds to import, and these answer a question about a study."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures"

READERS = [["studies"], ["params"], ["baselines"], ["best", "--study", "tiny"], ["report", "--study", "tiny"],
           ["export", "--study", "tiny", "-o", "t.yaml"]]

# Runs each command in one fresh interpreter and reports, per command, its exit code and whether torch was
# imported by then (the commands run in order, so a later one is only judged if the earlier ones stayed light).
PROBE = """
import json, sys
from click.testing import CliRunner
from hpsearch.cli import main
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(main, args)
    results.append([args[0], result.exit_code, "torch" in sys.modules, result.output[-300:]])
print(json.dumps(results))
"""


def test_reading_commands_import_no_torch(tmp_path):
    shutil.copy(FIXTURES / "old.db", tmp_path / "old.db")
    storage = ["--storage", f"sqlite:///{tmp_path / 'old.db'}"]
    commands = [args + storage if args[0] in ("best", "report", "export") else args for args in READERS]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands)], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    results = json.loads(done.stdout)
    assert [(name, code) for name, code, _, _ in results] == [(args[0], 0) for args in READERS], results
    assert [name for name, _, torch_loaded, _ in results if torch_loaded] == []
    assert (tmp_path / "t.yaml").is_file()
