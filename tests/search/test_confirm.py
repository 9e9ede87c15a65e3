"""`hpsearch confirm`: the best trials trained again with new seeds, each job once, and the confirmed winner
named by best, export and report."""

from __future__ import annotations

import json
import re
import socket
import time

import optuna
import pytest
import yaml
from click.testing import CliRunner

from hpsearch import record
from hpsearch.cli import main
from hpsearch.record import SeedResult
from hpsearch.results import ranking
from hpsearch.search import confirm
from hpsearch.search.run import RunOptions, run
from hpsearch.storage import LOCK_BRIEF_S, shared_lock
from hpsearch.studyfile.schema import load_spec

DIGITS_STUDY = {"budget": {"epochs": 2, "trials": 2}, "space": {"lr": {"float": [0.02, 0.2], "log": True}}}


@pytest.fixture
def small_study(write_study, storage):
    """A 2-trial digits study of 2 epochs a trial, just run: (storage URL, study name)."""
    spec = load_spec(write_study(**DIGITS_STUDY))
    run(spec, storage, RunOptions(device="cpu", keep_weights=0, stop_at_target=False))
    return storage, spec.name


def confirmations(storage: str, name: str) -> dict[int, list[int]]:
    """The confirmation seeds stored on each trial, read afresh."""
    study = optuna.load_study(study_name=name, storage=storage)
    return {t.number: [r["seed"] for r in t.user_attrs["confirm"]["seeds"]]
            for t in ranking.study_trials(study) if "confirm" in t.user_attrs}


def trained(output: str) -> list[tuple[int, int]]:
    return [(int(t), int(s)) for t, s in re.findall(r"^trial #(\d+) seed (\d+): val", output, re.M)]


def hand_made_study(storage: str, confirmed: bool = True) -> optuna.Study:
    """#0 has the best single run but a poor confirmation; #1 is the confirmed winner; #2 is unconfirmed
    (with `confirmed` False, none is)."""
    study = optuna.create_study(study_name="hand", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "digits")  # as hpsearch marks the studies it makes
    study.set_user_attr("dataset_split", {"name": "digits", "validation": 0.15, "test": 0.2, "split_seed": 0})
    study.set_user_attr("seed", 0)
    for value, mean in ((0.99, 0.90), (0.98, 0.95), (0.97, None)):
        attrs = {"config": {}, "epochs": 2, "test_accuracy": value - 0.01, "param_count": 1000, "seconds": 1.0}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
        if confirmed and mean is not None:
            record.store_confirmation(study, len(study.trials) - 1, confirm.summarize(
                [SeedResult(s, mean + d, mean + d, 1.0) for s, d in ((1, -0.01), (2, 0.01))]))
    return study


def test_confirm_again_trains_nothing_and_more_seeds_train_only_the_missing(small_study):
    storage, name = small_study
    runner = CliRunner()
    base = ["confirm", "--study", name, "--storage", storage, "--top", "2", "--device", "cpu"]
    first = runner.invoke(main, [*base, "--seeds", "1"])
    assert first.exit_code == 0, first.output
    top2 = [t.number for t in ranking.ranked(optuna.load_study(study_name=name, storage=storage).get_trials())[:2]]
    assert trained(first.stdout) == [(top2[0], 1), (top2[1], 1)]  # seed 1: the study's seed 0 + 1, never 0
    stored = ranking.study_trials(optuna.load_study(study_name=name, storage=storage))
    again = runner.invoke(main, [*base, "--seeds", "1"])
    assert again.exit_code == 0 and trained(again.stdout) == []
    assert "nothing to do: the best 2 trials each hold seed 1 already" in again.stderr
    assert ranking.study_trials(optuna.load_study(study_name=name, storage=storage)) == stored  # not a digit changed
    more = runner.invoke(main, [*base, "--seeds", "2"])
    assert more.exit_code == 0, more.output
    assert "2 training runs to go, 2 stored already" in more.stderr
    assert trained(more.stdout) == [(top2[0], 2), (top2[1], 2)]
    assert confirmations(storage, name) == {top2[0]: [1, 2], top2[1]: [1, 2]}
    attr = optuna.load_study(study_name=name, storage=storage).user_attrs[f"confirm #{top2[0]}"]  # public API
    vals = [r["val_accuracy"] for r in attr["seeds"]]
    assert attr["val"]["mean"] == pytest.approx(sum(vals) / 2)
    assert attr["val"]["std"] == pytest.approx(abs(vals[0] - vals[1]) / 2 ** 0.5)
    low, high = attr["val"]["ci95"]  # t(0.975, 1 df) = 12.706
    assert high - attr["val"]["mean"] == pytest.approx(min(12.706 * attr["val"]["std"] / 2 ** 0.5,
                                                           1 - attr["val"]["mean"]), abs=1e-3)


def test_two_worker_processes_train_every_job_exactly_once(small_study):
    storage, name = small_study
    result = CliRunner().invoke(main, ["confirm", "--study", name, "--storage", storage, "--top", "2", "--seeds", "2",
                                       "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 0, result.output
    jobs = trained(result.stdout)
    assert sorted(jobs) == [(0, 1), (0, 2), (1, 1), (1, 2)]  # four jobs, none twice
    assert confirmations(storage, name) == {0: [1, 2], 1: [1, 2]}


def test_a_claimed_job_is_left_to_its_worker_unless_the_worker_is_gone(storage):
    study, name = hand_made_study(storage, confirmed=False), "hand"
    one = confirm.Confirmation(study, storage, 1, 2, device=None)
    two = confirm.Confirmation(study, storage, 1, 2, device=None)
    first, second = one._claim(), two._claim()
    assert (first.seed, second.seed) == (1, 2) and first.trial.number == second.trial.number
    assert two._claim() is None  # both jobs claimed, by a live process
    claims = record.claims(one.study)
    claims[first.key] = {"worker": f"{socket.gethostname()}:{2 ** 22 + 7}", "at": claims[first.key]["at"]}
    record.set_claims(one.study, claims)  # as if its worker had been killed: a pid that does not run
    assert two._claim() == first
    one._store(second, SeedResult(2, 0.5, 0.4, 1.0))
    assert second.key not in record.claims(one.study) and confirmations(storage, name) == {first.trial.number: [2]}


def test_a_stopping_worker_frees_its_claim_or_leaves_it_within_seconds_when_the_lock_is_held(storage, caplog,
                                                                                             monkeypatch):
    """A worker stopping while another session holds the study lock waits a bounded time for it, and says what it
    left claimed."""
    study, name = hand_made_study(storage, confirmed=False), "hand"
    worker = confirm.Confirmation(study, storage, 1, 1, device=None)
    job = worker._claim()
    elsewhere = shared_lock(storage, name)  # another session's hold on the same study lock
    elsewhere.acquire()
    monkeypatch.setattr(confirm, "STOPPING_LOCK_WAIT_S", 0.1)  # the lock's least wait, LOCK_BRIEF_S, still applies
    started = time.monotonic()
    worker._release_interrupted(job)
    assert time.monotonic() - started < LOCK_BRIEF_S + 2
    assert job.key in record.claims(worker.study) and f"trial #{job.trial.number} seed 1 was left claimed" in caplog.text
    elsewhere.release()
    worker._release_interrupted(job)
    assert job.key not in record.claims(worker.study)


def test_best_export_and_report_name_the_confirmed_winner_and_say_it_is_not_the_single_run_best(storage, tmp_path):
    hand_made_study(storage)
    runner = CliRunner()
    summary = json.loads(runner.invoke(main, ["best", "--study", "hand", "--storage", storage, "--format", "json"]).stdout)
    assert summary["best"]["number"] == 1 and summary["single_run_best"]["number"] == 0
    assert summary["best"]["confirm"]["val"]["mean"] == pytest.approx(0.95)
    text = runner.invoke(main, ["best", "--study", "hand", "--storage", storage]).stdout
    assert ("best trial #1: the confirmed winner, the best mean validation accuracy over new seeds (of equal means, "
            "the earliest)\n") in text
    assert "confirmed val  0.9500 ± 0.0141 (95% interval 0.8229 to 1.0000)" in text
    assert "note: the single-run best is trial #0 (val 0.9900), not the confirmed winner #1" in text
    exported = runner.invoke(main, ["export", "--study", "hand", "--storage", storage, "-o", "best.yaml"])
    assert exported.exit_code == 0, exported.output
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["trial"] == 1
    report = runner.invoke(main, ["report", "--study", "hand", "--storage", storage]).stdout
    assert "| #1 | searched | 1, 2 | 95.00% ± 1.41% | 82.29% to 100.00% | 95.00% ± 1.41% | 98.00% |" in report
    assert "Confirmed winner: trial #1" in report and "The single-run best, trial #0 (val 99.00%)" in report


def test_confirm_on_a_study_with_nothing_completed_says_so(storage):
    optuna.create_study(study_name="empty", storage=storage, direction="maximize")
    result = CliRunner().invoke(main, ["confirm", "--study", "empty", "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 2 and "has no completed trial within its limits to confirm" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("workers", [1, 2])
def test_confirm_prints_its_table_and_the_confirmed_winner_as_report_shows_them(small_study, workers):
    storage, name = small_study
    result = CliRunner().invoke(main, ["confirm", "--study", name, "--storage", storage, "--top", "2", "--seeds", "1",
                                       "--device", "cpu", "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("| #")]
    assert len(table) == 2, result.stdout  # both confirmed trials, one row each
    winner = re.search(r"^Confirmed winner: trial #(\d+)", result.stdout, re.M)
    assert winner and table[0].startswith(f"| #{winner.group(1)} |")
    report = CliRunner().invoke(main, ["report", "--study", name, "--storage", storage]).stdout
    assert all(row in report for row in table) and winner.group(0) in report
