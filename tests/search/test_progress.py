"""Progress on stderr: in a log (not a terminal) no bars but plain lines, at most one of a kind every few
seconds, and every ended trial counted against the run's or the study's total."""

from __future__ import annotations

import io
import re

import optuna
from optuna.trial import TrialState
from rich.console import Console

from hpsearch.search import progress
from hpsearch.search.progress import QUIET_LOG_S, LiveBars, ParallelDisplay, RetrainDisplay, RunDisplay
from hpsearch.training import train
from hpsearch.training.train import Batches
from tests.helpers import invoke, stored_trial


def log_console() -> Console:
    """A console writing to a file, as stderr is under nohup or a batch scheduler."""
    return Console(file=io.StringIO(), width=200)


def test_progress_in_a_log_is_plain_lines_per_epoch_and_for_loading(write_study, tmp_path, image_folder):
    """stderr not a terminal, as under nohup or a batch scheduler: no live bars, but lines saying where the run is."""
    image_folder(tmp_path / "data" / "pets", per_class=10)
    path = write_study(dataset={"name": "imagefolder", "path": "pets", "image_size": 8, "validation": 4, "test": 4})
    result = invoke("run", "--study", str(path), "--device", "cpu", "--n-trials", "1")
    err = result.stderr
    assert result.exit_code == 0, err
    assert "decoding pets/ 20/20 images;" in err
    assert re.search(r"^trial #0 epoch 1/3 val [01]\.\d{4} \(0/1 trials done\); 0:\d\d elapsed$", err, re.MULTILINE)
    assert "[1/1] trial #0 complete" in err and "\x1b[" not in err  # no terminal control codes in a log


def test_a_long_epoch_in_a_log_gets_lines_with_its_batches_rate_and_projected_time(write_study, monkeypatch):
    """A real run of trials 2 epochs long (budget 3); both intervals set to 0 stand for an epoch of minutes."""
    monkeypatch.setattr(train, "BATCHES_EVERY_S", 0.0)
    monkeypatch.setattr(progress, "QUIET_LOG_S", 0.0)
    path = write_study(fixed={"blocks": 1, "convs_per_block": 1, "batch_size": 64, "epochs": 2})
    result = invoke("run", "--study", str(path), "--device", "cpu", "--n-trials", "1")
    err = result.stderr
    assert result.exit_code == 0, err
    assert err.startswith("study tiny-digits (2 epochs a trial, target none) on sqlite:///hpsearch.db")
    within = re.findall(r"^trial #0 epoch (\d)/2: batch (\d+)/(\d+), [\d,]+ images/s, the epoch's training "
                        r"\d+\.\d s at this rate; 0:\d\d elapsed$", err, re.MULTILINE)
    assert [(int(epoch), int(done)) for epoch, done, _ in within] == [
        (epoch, done) for epoch in (1, 2) for done in range(1, int(within[0][2]) + 1)]
    assert re.search(r"^trial #0 epoch 1/2 val [01]\.\d{4} \(0/1 trials done\); 0:\d\d elapsed$", err, re.MULTILINE)


def test_a_log_hears_of_a_running_epoch_only_once_it_was_quiet_for_quiet_log_s():
    console = log_console()
    done = Batches(epoch=1, epochs=6, done=120, total=390, batch_size=128, seconds=20.0)
    with RunDisplay(console, "run", n_trials=1, epochs=25) as display:
        display.trial_started(0, {"epochs": 6})
        display.batches_done(0, done)  # a line was printed less than QUIET_LOG_S ago (the display's start)
        display.last_printed -= QUIET_LOG_S
        display.batches_done(0, done)
        display.batches_done(0, done)  # that line was just printed
    assert console.file.getvalue() == ("trial #0 epoch 1/6: batch 120/390, 768 images/s, the epoch's training 65.0 s "
                                       "at this rate; 0:00 elapsed\n")
    console = log_console()
    with RetrainDisplay(console, seeds=1, epochs=6) as display:
        display.seed_started(3)
        display.last_printed -= QUIET_LOG_S
        display.batches_done(done)
    assert console.file.getvalue().startswith("seed 3 epoch 1/6: batch 120/390, 768 images/s")


def test_on_a_terminal_the_epoch_bar_moves_batch_by_batch():
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with RunDisplay(console, "run", n_trials=1, epochs=25) as display:
        display.trial_started(0, {"epochs": 6})
        display.batches_done(0, Batches(epoch=2, epochs=6, done=195, total=390, batch_size=128, seconds=20.0))
        bar = display.progress.tasks[display.epochs_bar]
        assert (bar.completed, bar.total, bar.description) == (1.5, 6, "epoch 2 batch 195/390")


def test_a_log_gets_the_first_line_of_each_kind_then_one_every_few_seconds():
    console = log_console()
    with LiveBars(console) as bars:
        assert not bars.live
        bars.line("epoch 1")
        bars.line("epoch 2")  # within PLAIN_EVERY_S of the last epoch line: left out
        bars.line("decoding 5/10", kind="loading")
        bars.line("epoch 3", now=True)
    lines = console.file.getvalue().splitlines()
    assert [line.split(";")[0] for line in lines] == ["epoch 1", "decoding 5/10", "epoch 3"]
    assert all(line.endswith("; 0:00 elapsed") for line in lines)


def test_an_ended_trial_gets_its_line_and_the_note_under_it():
    console = log_console()
    study = optuna.create_study()
    study.add_trial(stored_trial(0.9, baseline="seed002-fc"))
    with RunDisplay(console, "run", n_trials=2, epochs=3, note=lambda t: "a baseline") as display:
        display.trial_finished(study, study.trials[0])
    assert console.file.getvalue() == (
        "[1/2] trial #0 (seed002-fc) complete: val 0.9000, test 0.9000, 1,000 params, 3 epochs, 1.0s\n  a baseline\n")


def test_several_workers_count_this_run_or_with_until_the_study_s_finished_trials():
    earlier = stored_trial(0.8, run="before")
    running = optuna.trial.create_trial(state=TrialState.RUNNING, intermediate_values={1: 0.5, 2: 0.625},
                                        user_attrs={"run": "now"})
    ours = stored_trial(0.9, run="now")
    failed = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"run": "now", "failure": "out of memory"})
    study = optuna.create_study()
    for trial in (earlier, running, ours, failed):
        study.add_trial(trial)
    earlier, running, ours, failed = study.trials  # numbered 0 to 3
    for counting_study, said in (
            (False, ["trial #1 epoch 2/3 val 0.6250 (0/3 trials done)", "[1/3] trial #2 complete",
                     "[2/3] w0 trial #3 failed: out of memory"]),
            (True, ["trial #1 epoch 2/3 val 0.6250 (1/3 trials done)", "[2/3] trial #2 complete",
                    "[2/3] w0 trial #3 failed: out of memory"])):  # a failed trial is not one of the study's total
        console = log_console()
        with ParallelDisplay(console, "2 workers", total=3, epochs=3, counting_study=counting_study,
                             run_id="now") as display:
            display.polled([earlier, running, ours, failed])
            display.trial_ended(ours, None)
            display.trial_ended(failed, 0)
        lines = console.file.getvalue().splitlines()
        assert lines[0] == "2 workers"
        assert [line[:len(expected)] for line, expected in zip(lines[1:], said)] == said, lines


def test_what_a_trial_line_shows_cannot_forge_a_line_drive_the_terminal_or_style_the_console():
    """A failure's reason (an exception's text), a header with a study's name: shown as they read, on one line."""
    console = log_console()
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={
        "failure": "out of memory\nerror: forged \x1b[2J [/x] [bold]y :smile:"}))
    with RunDisplay(console, "study [/x] [red]a", n_trials=1, epochs=3) as display:
        display.trial_finished(study, study.trials[0])
        display.line("decoding cat\x1b[31m/", now=True)
    assert console.file.getvalue().splitlines() == [
        "[1/1] trial #0 failed: out of memory\\nerror: forged \\x1b[2J [/x] [bold]y :smile:",
        "decoding cat\\x1b[31m/; 0:00 elapsed"]
