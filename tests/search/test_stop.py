"""`hpsearch status` and `hpsearch stop` on a real run in a process of its own: what status shows of it, a clean
stop from another process, and queued copies discarded, each with the word it records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.record import keys as A
from hpsearch.cli import main
from hpsearch.search.stop import DISCARDED, STOPPED
from hpsearch.storage import checkpoint_root, trial_checkpoint
from tests.helpers import SLOW, finish, first_epochs_done, hpsearch, load, wait_for

LONG = {"budget": {"epochs": 40, "trials": 4}, **SLOW}  # a trial lasts long enough to be stopped mid-way


def status(*args: str) -> str:
    result = CliRunner().invoke(main, ["status", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_status_shows_a_running_trial_and_stop_ends_the_run_cleanly_leaving_a_copy_to_resume(write_study, tmp_path):
    path = write_study(**LONG)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    run = hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu")
    wait_for(first_epochs_done(run, storage), timeout=300)  # minutes on a loaded machine
    shown = json.loads(status("--study", "tiny-digits", "--storage", storage, "--format", "json"))
    (running,) = shown["running"]
    assert running["number"] == 0 and running["epoch"] >= 1 and running["epochs"] == 40
    assert running["worker"] == f"{__import__('socket').gethostname()}:{run.pid}" and not running["stale"]
    assert shown["counts"]["running"] == 1 and shown["runs"][0]["goal"] == "--n-trials 4"
    text = status("--study", str(path), "--storage", storage)
    assert "running:\n  trial #0: epoch " in text and "/40 val " in text and "run " in text

    stopped = CliRunner().invoke(main, ["stop", "--study", "tiny-digits", "--storage", storage])
    assert stopped.exit_code == 0, stopped.output
    assert "stop requested by " in stopped.stdout and "running now, to stop at their next epoch end: #0" in stopped.stdout
    code, _, err = finish(run, timeout=120)
    assert code == 0 and "study tiny-digits: stop requested by " in err and "every trial" not in err, err
    trials = load(storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # no new trial started
    assert trials[0].user_attrs[A.FAILURE].startswith(STOPPED) and trials[0].intermediate_values
    assert trials[1].system_attrs["retry_history"] == [0]
    checkpoint = trial_checkpoint(checkpoint_root(storage), "tiny-digits", 0)
    assert checkpoint.is_file()  # kept for the copy
    epochs = len(trials[0].intermediate_values)
    assert f"trial #1: copy of #0, resumes at epoch {epochs + 1}" in status("--study", "tiny-digits",
                                                                            "--storage", storage)

    discarded = CliRunner().invoke(main, ["stop", "--study", "tiny-digits", "--storage", storage,
                                          "--discard-queued"])
    assert discarded.exit_code == 0 and "discarded 1 queued trial: #1" in discarded.stdout, discarded.output
    copy = load(storage).trials[1]
    assert copy.state == TrialState.FAIL and copy.user_attrs[A.FAILURE].startswith(DISCARDED)
    assert not checkpoint.exists()
    assert "0 queued" in status("--study", "tiny-digits", "--storage", storage)


def test_a_run_started_after_a_stop_goes_on(write_study, tmp_path):
    path = write_study(budget={"epochs": 1, "trials": 2})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    runner = CliRunner()
    assert runner.invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                "--n-trials", "1"]).exit_code == 0
    assert runner.invoke(main, ["stop", "--study", str(path), "--storage", storage]).exit_code == 0
    again = runner.invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                 "--n-trials", "1"])
    assert again.exit_code == 0, again.output
    assert [t.state for t in load(storage).trials] == [TrialState.COMPLETE] * 2


def test_status_and_stop_load_no_torch_and_name_a_missing_study_in_one_line(write_study, tmp_path):
    path = write_study(budget={"epochs": 1, "trials": 1})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"]
                              ).exit_code == 0
    probe = ("import sys\nfrom hpsearch.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as end:\n"
             "    print('exit', end.code, 'torch' in sys.modules, file=sys.stderr)\n")
    for command in ("status", "stop"):
        done = subprocess.run([sys.executable, "-c", probe, command, "--study", "tiny-digits", "--storage", storage],
                              capture_output=True, text=True, timeout=120)
        assert done.stderr.splitlines()[-1] == "exit 0 False", done.stderr
        missing = CliRunner().invoke(main, [command, "--study", "other", "--storage", storage])
        assert missing.exit_code == 2 and missing.output.count("\n") == 1
        assert "no study named 'other'" in missing.output and "tiny-digits" in missing.output


def test_status_watch_shows_the_study_again_until_ctrl_c(write_study, tmp_path):
    path = write_study(budget={"epochs": 1, "trials": 1})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"]
                              ).exit_code == 0
    shown = tmp_path / "shown.txt"
    with shown.open("w") as out:
        watching = hpsearch("status", "--study", "tiny-digits", "--storage", storage, "--watch", "0.5", stdout=out)

        def read_twice() -> bool:
            assert watching.poll() is None, watching.communicate()
            return shown.read_text().count("study tiny-digits on ") >= 2

        wait_for(read_twice)  # its start, then a reading every half second
        watching.send_signal(signal.SIGINT)
        code, _, err = finish(watching, timeout=60)
    assert code == 0 and err == "", err
    assert "every 0.5 s (Ctrl-C ends)" in shown.read_text()
