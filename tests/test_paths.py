"""File names safe whatever the study is called: nothing written outside the storage's side folder."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.paths import slug
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from tests.helpers import files_in

AWKWARD_NAMES = ["../../escaped", "a/b", "a_b", "with space", "névé ☃", "..", ".hidden", "/abs/path", ""]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_slug_is_one_safe_file_name_component(name):
    made = slug(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{8}|_-[0-9a-f]{8}", made), made


def test_slug_tells_names_apart_and_keeps_them_readable():
    assert len({slug(n) for n in AWKWARD_NAMES}) == len(AWKWARD_NAMES)
    assert slug("digits-quick").startswith("digits-quick-") and slug("x" * 300).startswith("x" * 40 + "-")
    assert slug("a/b") == slug("a/b")


def test_a_study_named_to_escape_writes_only_beside_its_storage(write_study, tmp_path):
    """Checkpoints, the lock, weights: every file of a run lands in the storage's side folder, whatever the name."""
    store = tmp_path / "store"
    store.mkdir()
    path = write_study(name="../../escaped/névé ☃", budget={"epochs": 2, "trials": 1})
    outside = files_in(tmp_path) - {f"store/{f}" for f in files_in(store)}
    study = run(load_spec(path), f"sqlite:///{store / 'x.db'}", RunOptions(device="cpu", n_trials=1))
    assert study.trials[0].state.name == "COMPLETE"
    assert files_in(tmp_path) - {f"store/{f}" for f in files_in(store)} == outside | {"store"}
    written = files_in(store)
    name = slug("../../escaped/névé ☃")
    assert f"x-files/locks/{name}.lock" in written and f"x-files/checkpoints/{name}" in written
    assert not any(".." in part or " " in part for f in written for part in f.split("/"))


def test_listing_commands_write_nothing(isolated):
    for command in (["baselines"], ["studies"], ["params"]):
        assert CliRunner().invoke(main, command).exit_code == 0
    assert files_in(isolated) == set()
