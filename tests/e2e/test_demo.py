"""The README's demo, `hpsearch run --study digits-quick`, as a newcomer runs it: it shows a search."""

from __future__ import annotations

import optuna
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import main


def test_the_demo_searches_to_its_target_then_runs_the_baselines_and_sets_the_search_against_them(isolated):
    result = CliRunner().invoke(main, ["run", "--study", "digits-quick", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="digits-quick", storage="sqlite:///hpsearch.db").trials
    baselines = [t for t in trials if "baseline" in t.user_attrs]
    sampled = [t for t in trials if "baseline" not in t.user_attrs]
    assert trials[0] in sampled and len(baselines) == 2 and all(t.state == TrialState.COMPLETE for t in baselines)
    reached = next(t for t in sampled if t.state == TrialState.COMPLETE and t.value >= 0.985)
    # The search reached the target on validation (a baseline would not end it); the baselines waited for it, ran,
    # and ended the run.
    assert sampled[-1] is reached and [t.number for t in trials[-2:]] == [t.number for t in baselines]
    assert (f"target val_accuracy >= 98.50% reached by searched trial #{reached.number}, the first sampled trial to "
            f"meet it: val {reached.value:.2%}; test {reached.user_attrs['test_accuracy']:.2%}") in result.stderr
    versus = result.stdout.split("search against the baselines:\n")[1].splitlines()
    assert versus[0].startswith("  best searched  #") and versus[1].startswith("  best baseline  #")
    # Side files in one folder beside the storage.
    assert sorted(p.name for p in isolated.iterdir()) == ["hpsearch-files", "hpsearch.db"]
