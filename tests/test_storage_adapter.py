"""Optuna's private names behind one adapter (hpsearch/storage/optuna_private.py): no other module uses one, the
adapter lists each it uses, Optuna is pinned to the versions tested, and the row reader knows every column of
Optuna's trial tables (a release that adds one reads through Optuna's own reader, and says so)."""

from __future__ import annotations

import ast
import logging
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy

import hpsearch
from hpsearch.errors import StorageError
from hpsearch.storage import open_storage, opening, optuna_private, rows

PACKAGE = Path(hpsearch.__file__).parent
ADAPTER = PACKAGE / "storage" / "optuna_private.py"
INTERNAL = {"get_storage"}  # public names Optuna's docstrings mark "only for internal usage"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _optuna_private_names() -> set[str]:
    """Every _name Optuna's source defines or uses, and the public names it marks "only for internal usage"."""
    source = "\n".join(p.read_text() for p in Path(optuna.__file__).parent.rglob("*.py"))
    return set(re.findall(r"\b_[A-Za-z]\w*", source)) - {n for n in re.findall(r"\b__\w+", source)} | INTERNAL


def _private_uses(path: Path, *, own_attributes: bool) -> set[str]:
    """The private names a module imports from Optuna, the _attributes it reads of other objects, and with
    `own_attributes` those it reads of self and super() too and the _methods it defines (what an Optuna subclass
    overrides)."""
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "optuna":
            found |= {part for part in node.module.split(".") if part.startswith("_")}
            found |= {alias.name for alias in node.names if alias.name.startswith("_") or alias.name in INTERNAL}
        elif isinstance(node, ast.Import):
            found |= {part for alias in node.names if alias.name.split(".")[0] == "optuna"
                      for part in alias.name.split(".") if part.startswith("_")}
        elif isinstance(node, ast.Attribute) and (node.attr.startswith("_") or node.attr in INTERNAL):
            on_itself = (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")) or (
                isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "super")
            if own_attributes or not on_itself:
                found.add(node.attr)
        elif own_attributes and isinstance(node, ast.FunctionDef) and node.name.startswith("_"):
            found.add(node.name)
    return {name for name in found if not name.startswith("__")}


def test_no_module_but_the_adapter_uses_a_private_name_of_optuna():
    optunas = _optuna_private_names()
    found = {f"{path.relative_to(PACKAGE.parent)}: {name}" for path in PACKAGE.rglob("*.py") if path != ADAPTER
             for name in _private_uses(path, own_attributes=False) & optunas}
    assert not found, "Optuna's private names belong in hpsearch/storage/optuna_private.py only"


def test_the_adapter_lists_every_private_name_it_uses_in_its_docstring():
    docstring = ast.get_docstring(_tree(ADAPTER))
    assigned_here = {node.attr for node in ast.walk(_tree(ADAPTER))
                     if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)}
    uses = (_private_uses(ADAPTER, own_attributes=True) & _optuna_private_names()) - assigned_here
    assert {"_get_trials", "_study_id", "_CachedStorage", "_create_scoped_session"} <= uses  # the scan sees them
    assert not {name for name in uses if not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", docstring)}


def test_optuna_is_pinned_to_the_minor_versions_tested_and_the_installed_one_is_among_them():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    (pin,) = re.findall(r'"optuna(>=[^"]*)"', pyproject)
    tested = sorted(tuple(map(int, minor.split("."))) for minor in optuna_private.TESTED_OPTUNA)
    low, high = tested[0], tested[-1]
    assert pin == f">={low[0]}.{low[1]},<{high[0]}.{high[1] + 1}", "pyproject.toml's pin and TESTED_OPTUNA differ"
    assert optuna_private.untested_optuna() is None, (
        f"optuna {optuna.__version__} is installed, hpsearch pins {pin}: run these tests on it, then widen the pin")


def test_an_untested_optuna_is_a_warning_once_when_a_storage_opens(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(optuna, "__version__", "5.9.0")
    opening._warn_if_untested.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="hpsearch"):
            open_storage(f"sqlite:///{tmp_path / 'a.db'}")
            open_storage(f"sqlite:///{tmp_path / 'b.db'}", reading=True)
    finally:
        opening._warn_if_untested.cache_clear()
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith("optuna 5.9.0 is not a version hpsearch was tested with (5.1.*)")
    assert said.endswith("install a tested one (pip install 'optuna==5.1.*')")


def test_the_row_reader_reads_every_column_of_optunas_trial_tables():
    assert [table.name for table in optuna_private.trial_tables()][0] == "trials"
    assert rows.unread_columns() == [] and rows.UNREAD_COLUMNS == []


def test_a_column_or_a_table_of_trial_rows_that_a_release_adds_is_named():
    """Constraints moved out of system_attrs into a column, or a table of their own, would be lost from every trial
    read as rows: the reader names them."""
    copied = sqlalchemy.MetaData()
    tables = [table.to_metadata(copied) for table in optuna_private.trial_tables()]
    tables[0].append_column(sqlalchemy.Column("constraints_json", sqlalchemy.Text))
    tables.append(sqlalchemy.Table("trial_constraints", copied, sqlalchemy.Column("trial_id", sqlalchemy.Integer),
                                   sqlalchemy.Column("value", sqlalchemy.Float)))
    assert rows.unread_columns(tables) == ["trials.constraints_json", "trial_constraints.trial_id",
                                           "trial_constraints.value"]


def test_trials_are_read_through_optunas_own_reader_where_a_column_is_unknown(monkeypatch, tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    study = optuna.create_study(storage=storage, study_name="x")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={"lr": 0.1}, user_attrs={"a": 1},
                                              distributions={"lr": optuna.distributions.FloatDistribution(0, 1)}))
    monkeypatch.setattr(rows, "UNREAD_COLUMNS", ["trials.constraints_json"])
    monkeypatch.setattr(rows, "_TrialRows", lambda *a: pytest.fail("read as rows"))
    (trial,) = optuna.load_study(study_name="x", storage=storage).trials
    assert (trial.value, trial.params, trial.user_attrs) == (0.5, {"lr": 0.1}, {"a": 1})


def test_a_reader_opens_optunas_storage_without_its_schema_check_and_reads_the_same(tmp_path):
    """for_reading builds the object Optuna's constructor builds, minus the version manager it makes on first use,
    whose head revision is the one for_reading compares with (SCHEMA_REVISION, kept in step here)."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="x")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={"lr": 0.1}, user_attrs={"a": 1},
                                              distributions={"lr": optuna.distributions.FloatDistribution(0, 1)}))
    written, read = open_storage(url), opening.open_existing(url)
    assert type(read) is type(written)
    assert vars(written).keys() - vars(read).keys() == {"_version_manager"}
    assert {k: v for k, v in vars(read).items() if k not in ("engine", "scoped_session")} == {
        k: v for k, v in vars(written).items() if k not in ("engine", "scoped_session", "_version_manager")}
    assert read._version_manager.get_head_version() == optuna_private.SCHEMA_REVISION
    assert optuna.load_study(study_name="x", storage=read).trials == study.trials


def test_reading_a_study_imports_no_alembic(tmp_path):
    """Optuna's schema check imports alembic: 0.15 s of `hpsearch status`'s 1 s (bench/README.md)."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    optuna.create_study(storage=open_storage(url), study_name="x").add_trial(optuna.trial.create_trial(value=1.0))
    probe = ("import sys, optuna; from hpsearch.storage import open_existing; "
             f"print(len(optuna.load_study(study_name='x', storage=open_existing({url!r})).trials), "
             "'alembic' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "1 False\n"


@pytest.mark.parametrize("reading", [True, False])
def test_tables_at_another_optuna_revision_are_one_line_naming_optunas_upgrade(tmp_path, reading):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    optuna.create_study(storage=open_storage(url), study_name="x")
    with sqlite3.connect(tmp_path / "x.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(StorageError, match=r"^cannot open storage sqlite:///\S+x\.db: .*optuna storage upgrade"):
        open_storage(url, reading=reading)
