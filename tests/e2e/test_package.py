"""hpsearch as users get it: a light command line, and the shipped studies inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import hpsearch

REPOSITORY = Path(__file__).resolve().parents[2]
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


def build_wheel(folder: Path) -> Path:
    """The wheel of this checkout, built offline from a copy in `folder` (the checkout gets no build/)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    for name in ("hpsearch", "studies"):
        shutil.copytree(REPOSITORY / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(source), "-w", str(folder / "wheel")], check=True, capture_output=True)
    return next((folder / "wheel").glob("hpsearch-*.whl"))


def test_the_wheel_carries_the_shipped_studies_and_an_install_finds_them(tmp_path):
    wheel = build_wheel(tmp_path)
    assert wheel.name.startswith(f"hpsearch-{hpsearch.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (REPOSITORY / "studies").glob("*.yaml"))
    assert shipped and {f"hpsearch/studies/{name}" for name in shipped} <= names
    assert "hpsearch/__init__.py" in names

    site = tmp_path / "site"  # a pure-Python wheel unpacked is the package as pip installs it
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    listed = subprocess.run([sys.executable, "-m", "hpsearch", "studies"], cwd=empty, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site)}, check=True).stdout
    assert all(Path(name).stem in listed for name in shipped)
    where = subprocess.run([sys.executable, "-c", "import hpsearch.studyfile.catalog as c; print(c.SHIPPED_DIR)"], cwd=empty,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)}, check=True)
    assert Path(where.stdout.strip()) == (site / "hpsearch" / "studies").resolve()
