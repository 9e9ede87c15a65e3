"""hpsearch as users get it: a light command line, a version, and the shipped studies inside the package."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

import hpsearch
from hpsearch import data
from hpsearch.cli import main
from hpsearch.spectypes import DATASET_NAMES

HEAVY = ("torch", "torchvision", "optuna", "sklearn", "rich", "PIL", "matplotlib", "sqlalchemy")


def test_help_studies_and_params_load_no_heavy_library():
    """--help, `studies` and `params` start in a blink: torch alone takes seconds to import."""
    code = f"""
import sys
from click.testing import CliRunner
from hpsearch.cli import main
for args in (["--help"], ["studies"], ["params"], ["run", "--help"], ["best", "--help"]):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (args, result.output)
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_version_is_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"hpsearch, version {hpsearch.__version__}"


def test_every_dataset_a_study_may_name_has_a_reader():
    assert tuple(data.DATASETS) == DATASET_NAMES
