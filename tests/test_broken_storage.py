"""A storage broken under hpsearch (damaged pages, a full disk, a read-only file) ends a command in one line
that says what happened and what to do, and hpsearch writes nothing to it."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.storage import storage_failure

FIXTURES = Path(__file__).parent / "fixtures"
PAGE = 4096


@pytest.fixture
def damaged(tmp_path, monkeypatch) -> Path:
    """tests/fixtures/old.db with the start of every page from the tenth on overwritten: the header and schema
    read, the trials do not."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "damaged.db"
    shutil.copy(FIXTURES / "old.db", path)
    data = bytearray(path.read_bytes())
    for start in range(10 * PAGE, len(data), PAGE):
        data[start:start + 100] = b"\xff" * 100
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("command", [["best"], ["report"], ["export", "-o", "t.yaml"], ["dashboard"],
                                     ["run", "--n-trials", "1"]])
def test_a_damaged_database_is_one_line_and_left_as_it_is(damaged, command):
    before = hashlib.sha256(damaged.read_bytes()).hexdigest()
    study = "digits-quick" if command[0] == "run" else "tiny"
    result = CliRunner().invoke(main, [command[0], "--study", study, "--storage", f"sqlite:///{damaged}",
                                       *command[1:]])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "database disk image is malformed: the file is damaged" in lines[0], result.output
    assert "sqlite3 FILE .recover" in lines[0]
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == before


def test_a_full_disk_mid_run_names_the_fix():
    """The error SQLite raises when a write finds no space, as SQLAlchemy wraps it."""
    full = sqlalchemy.exc.OperationalError("INSERT INTO trials", {}, sqlite3.OperationalError("database or disk is full"))
    assert "the disk holding the storage is full: free space and run the same command again" in str(
        storage_failure(full))
    assert storage_failure(ValueError("not a database error")) is None
