"""The end of a run: what it did (its trials are those with its run id), the study's summary and time to
target, and the dashboard note that records them. `run` and a lone `worker` end here; the CLI only says it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.results import dashboard, report, timing
from hpsearch.results.trials import FINISHED, first_reaching, is_warm_start, summarize
from hpsearch.search.run import RunOptions
from hpsearch.search.stop import request_for
from hpsearch.studyfile.types import StudySpec


@dataclass(frozen=True)
class RunEnd:
    """What one run did, for the CLI to say."""

    trials: int  # trials this run ran
    finished: int  # finished (complete or pruned) trials the study holds
    nothing_to_do: bool  # --until a total the study already held
    reached: FrozenTrial | None  # the first searched trial of this run to reach the target
    summary: dict[str, Any]  # results.trials.summarize
    pace: list[str]  # time to target and trials per hour, a line each
    all_failed: tuple[str, int] | None  # every trial of the run failed: the most common reason and its count
    stopped: bool  # `hpsearch stop` ended the run (its stopped trial is no failure of the run's)


def finish(study: optuna.Study, spec: StudySpec, options: RunOptions) -> RunEnd:
    """What the run did; the summary and the baselines-versus-search table go into the study's dashboard note."""
    trials = study.get_trials(deepcopy=False)
    ours = [t for t in trials if record.run_id(t) == options.run_id]
    finished = sum(t.state in FINISHED and not is_warm_start(t) for t in trials)
    dashboard.write_note(study, report.markdown(study, spec.baselines, epochs=spec.budget.epochs, spec=spec))
    stopped = request_for(study, options.run_id) is not None
    return RunEnd(
        trials=len(ours), finished=finished,
        nothing_to_do=not ours and options.until is not None and finished >= options.until,
        reached=first_reaching(ours, spec), summary=summarize(study),
        pace=timing.lines(timing.pace(trials, spec)),
        all_failed=report.most_common_failure(ours) if ours and not stopped and all(t.state == TrialState.FAIL
                                                                                      for t in ours) else None,
        stopped=stopped)
