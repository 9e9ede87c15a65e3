"""A stored trial -> a config file that stands alone; a config file -> the same model trained again.

The config carries everything the trial was trained from (every parameter with defaults filled
in, the dataset and its split, epochs, seed, the import path and source hash of any builder of the
user's that made its model or read its data) and what it reached (metrics, library versions), so
`hpsearch train` needs neither the study file nor the storage. Retraining uses the builders and
the seeding of objective.py, step for step: with the trial's own seed on the CPU it gives the
trial's validation and test accuracy again, exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.files import write_atomic
from hpsearch.record import TrialRecord
from hpsearch.results import ranking
from hpsearch.results.artifacts import copy_weights, read_header, trial_weights_path
from hpsearch.results.trials import objectives
from hpsearch.studyfile import params as P
from hpsearch.studyfile.catalog import remembered_spec
from hpsearch.studyfile.param import is_int, is_number
from hpsearch.studyfile.plugins import is_import_path
from hpsearch.studyfile.schema import config_dataset, load_yaml, yaml_problem
from hpsearch.studyfile.types import DatasetSpec, StudySpec
from hpsearch.words import yaml_document

FORMAT = "hpsearch-config/1"
_KEYS = {"format", "study", "trial", "baseline", "dataset", "epochs", "seed", "params", "init", "input_shape",
         "classes", "code", "metrics", "versions", "weights"}  # init, input_shape, classes, code: optional
_REQUIRED = ("format", "dataset", "epochs", "seed", "params")
_INIT_KEYS = {"study", "trial", "storage", "weights", "sha256"}


@dataclass(frozen=True)
class TrialConfig:
    """A config file, validated: what retraining needs, and what the trial reached for comparison."""

    record: TrialRecord
    dataset: DatasetSpec  # record.dataset, checked
    metrics: Mapping[str, Any]
    versions: Mapping[str, Any]


# --------------------------------------------------------------------------------------------
# Export: a stored trial -> config dict -> file.


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial `number`, or the best completed one; only a completed trial has metrics to carry."""
    trials = ranking.study_trials(study)
    if number is None:
        best = ranking.best_trial(trials)
        if best is None:
            raise HpsearchError(f"study {study.study_name!r} has no completed trial yet: "
                                f"`hpsearch run --study {study.study_name}`")
        return best
    trial = next((t for t in trials if t.number == number), None)
    if trial is None:
        raise HpsearchError(f"study {study.study_name!r} has no trial #{number} (trials 0 to {len(trials) - 1})")
    if trial.state != TrialState.COMPLETE:
        state = {TrialState.FAIL: "failed", TrialState.WAITING: "queued"}.get(trial.state, trial.state.name.lower())
        raise HpsearchError(f"trial #{number} is {state}, not complete: export a completed trial "
                            "(leave out --trial for the best)")
    return trial


def picked_notes(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    """What `export` without --trial says of the trial it picked: how it was chosen; a baseline named as one, with
    the best searched trial and the option that exports it (a config handed on as the best must not be a hand-made
    model unsaid)."""
    trials = ranking.study_trials(study)
    names = objectives(study)
    second = names[1] if len(names) > 1 else None
    how = ranking.how_chosen(confirmed=ranking.confirmed_mean(trial) is not None,
                             within_limits=bool(record.study_record(study).bounds), second=second)
    notes = [f"trial #{trial.number}: {how}"]
    if (baseline := record.baseline(trial)) is not None:
        searched = ranking.best_searched(trials)
        beside = (f"the best searched trial is #{searched.number} (val {ranking.val_accuracy(searched):.4f}, test "
                  f"{_accuracy(record.outcome(searched).test_accuracy)}): --trial {searched.number} exports it"
                  if searched is not None else "no searched trial has completed yet")
        notes.append(f"note: trial #{trial.number} is baseline {baseline}, a hand-made model of "
                     f"the reports, not a searched trial; {beside}")
    return notes


def _accuracy(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.4f}"


def trial_config(study: optuna.Study, trial: FrozenTrial, storage_url: str,
                 spec: StudySpec | None = None) -> dict[str, Any]:
    """The standalone config of a completed trial, as a plain dict ready for YAML or JSON.

    Split and seed come from the study (recorded when it was created); for a study made before
    that was recorded, from `spec` or the study file the study remembers. A transfer trial's
    source study is named with its storage (`storage_url` where it is the study's own), masked as
    every Init is.
    """
    stored = record.study_record(study)
    split, seed = stored.split, stored.seed
    if split is None or seed is None:
        spec = spec or remembered_spec(study.study_name, stored.spec_path)
        if spec is None:
            raise HpsearchError(f"study {study.study_name!r} does not record its dataset split and seed, and the "
                                f"study file it was made from ({stored.spec_path or 'unknown'}) "
                                "is not here or no longer reads as that study: give the study file as --study FILE")
        split, seed = spec.dataset.recorded(), spec.seed
    config = record.config(trial)
    recipe = record.stored_recipe(trial, split=split, seed=seed,
                                  params=P.complete(trial.params if config is None else config))
    if recipe.init is not None and recipe.init.study is not None:
        recipe = replace(recipe, init=replace(recipe.init, storage=recipe.init.storage or storage_url))
    did, where = record.outcome(trial), record.provenance(trial)
    return {
        "format": FORMAT,
        "study": study.study_name,
        "trial": trial.number,
        **({"baseline": did.baseline} if did.baseline is not None else {}),
        **recipe.config(),
        "metrics": {"val_accuracy": ranking.val_accuracy(trial), "test_accuracy": did.test_accuracy,
                    "param_count": did.param_count, "seconds": did.seconds, "device": where.device,
                    "dataset_source": where.dataset_source},
        "versions": {"torch": where.torch, "optuna": where.optuna, "hpsearch": version("hpsearch")},
    }


def write_config(config: dict[str, Any], out: Path, weights: Path | None = None) -> Path | None:
    """Write `config` as YAML or JSON (by the suffix); with `weights`, copy them beside it and say so."""
    if out.suffix not in (".yaml", ".yml", ".json"):
        raise HpsearchError(f"-o {out}: the file name must end in .yaml, .yml or .json")
    copied = None
    if weights is not None:
        copied = out.with_suffix(".safetensors")
        copy_weights(weights, copied)
        config = {**config, "weights": {"file": copied.name, "sha256": _sha256(copied)}}
    if out.suffix == ".json":
        write_atomic(out, json.dumps(config, indent=2) + "\n")
    else:
        write_atomic(out, f"# hpsearch trial config: `hpsearch train --config {out.name}` trains it again\n"
                     + yaml_document(config))
    return copied


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_trial(study: optuna.Study, storage_url: str, number: int | None, out: Path, *,
                 spec: StudySpec | None = None, include_weights: bool = True) -> tuple[FrozenTrial, Path | None]:
    """Write the config of trial `number` (None: the best) to `out`; returns the trial and any weights file."""
    trial = pick_trial(study, number)
    weights = trial_weights_path(storage_url, trial) if include_weights else None
    return trial, write_config(trial_config(study, trial, storage_url, spec), out, weights)


# --------------------------------------------------------------------------------------------
# Train again: file -> TrialConfig -> model.


def read_config(path: Path) -> TrialConfig:
    """Read and validate a config file; SpecError lists every problem as `file: key: problem`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read the file ({exc.strerror})"]) from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [yaml_problem(exc)]) from None
    except ValueError as exc:
        raise SpecError(str(path), [f"not valid JSON ({exc})"]) from None
    if not isinstance(raw, dict):
        raise SpecError(str(path), ["must be a mapping written by `hpsearch export`"])
    return parse_config(raw, str(path))


def parse_config(raw: dict[str, Any], where: str) -> TrialConfig:
    """A config dict (read from a file, or trial_config's) checked; SpecError names `where` and every problem."""
    problems = [f"{key}: unknown key (allowed: {', '.join(sorted(_KEYS))})" for key in raw if key not in _KEYS]
    problems += [f"{key}: missing" for key in _REQUIRED if key not in raw]
    if raw.get("format", FORMAT) != FORMAT:
        problems.append(f"format: {raw['format']!r} is not {FORMAT!r} (export it again with this hpsearch)")
    dataset, dataset_problems = config_dataset(raw["dataset"]) if "dataset" in raw else (None, [])
    problems += dataset_problems
    if "epochs" in raw and not (is_int(raw["epochs"]) and raw["epochs"] >= 1):
        problems.append(f"epochs: must be a whole number >= 1, got {raw['epochs']!r}")
    if "seed" in raw and not P.is_seed(raw["seed"]):
        problems.append(f"seed: must be a whole number from 0 to {P.MAX_SEED}, got {raw['seed']!r}")
    for key in ("metrics", "versions"):
        if not isinstance(raw.get(key) or {}, dict):
            problems.append(f"{key}: must be a mapping, as `hpsearch export` writes it, got {raw[key]!r}")
    for key in ("val_accuracy", "test_accuracy"):
        value = raw["metrics"].get(key) if isinstance(raw.get("metrics"), dict) else None
        if value is not None and not is_number(value):
            problems.append(f"metrics.{key}: must be an accuracy (a number), got {value!r}")
    problems += params_problems(raw.get("params"))
    params = raw.get("params")
    if isinstance(params, dict) and "epochs" in params and "epochs" in raw and params["epochs"] != raw["epochs"]:
        problems.append(f"params.epochs: {params['epochs']!r}, but epochs is {raw['epochs']!r}: a trial trains "
                        "its params.epochs, and `hpsearch export` writes the same number in both")
    problems += _record_problems(raw)
    if problems:
        raise SpecError(where, problems)
    return TrialConfig(record=TrialRecord.from_config(raw), dataset=dataset,
                       metrics=raw.get("metrics") or {}, versions=raw.get("versions") or {})


def params_problems(params: Any) -> list[str]:
    """What is wrong with a trial's recorded parameters (a config's, a weights file's)."""
    if not isinstance(params, dict):
        return ["params: must be a mapping of parameter names to values"]
    problems = []
    for name, value in params.items():
        param = P.lookup(name)
        if param is None:
            problems.append(f"params.{name}: unknown parameter (`hpsearch params` lists them)")
        elif why := param.check_value(value):
            problems.append(f"params.{name}: {value!r} {why}")
    return problems


def weights_record(path: Path) -> TrialRecord | None:
    """The record in the header of a weights file hpsearch wrote, checked as an exported config is: a damaged or
    foreign header is a SpecError naming the file. None for a file written before headers carried one."""
    header = read_header(path)
    if "record" not in header:
        return None
    where = f"{path} (its header)"
    try:
        raw = json.loads(header["record"])
    except ValueError as exc:
        raise SpecError(where, [f"record: not valid JSON ({exc}); the file is damaged or another program's"]) from None
    if not isinstance(raw, dict):
        raise SpecError(where, ["record: must be a mapping, as hpsearch writes it"])
    parse_config({**raw, "format": FORMAT}, where)
    return TrialRecord.from_header(header)


def _record_problems(raw: dict[str, Any]) -> list[str]:
    """What is wrong with the optional keys that say where the weights start and what the model was built for."""
    problems = []
    init = raw.get("init")
    if init is not None:
        if not isinstance(init, dict) or not init.keys() <= _INIT_KEYS or ("study" in init) == ("weights" in init):
            problems.append(f"init: must be {{study: NAME, trial: N, storage: URL}} or {{weights: PATH, sha256: HEX}}, "
                            f"as `hpsearch export` writes it, got {init!r}")
    shape = raw.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3
                                  and all(is_int(n) and n >= 1 for n in shape)):
        problems.append(f"input_shape: must be [channels, height, width], got {shape!r}")
    if raw.get("classes") is not None and not (is_int(raw["classes"]) and raw["classes"] >= 1):
        problems.append(f"classes: must be a whole number >= 1, got {raw['classes']!r}")
    code = raw.get("code")
    if code is not None and not (isinstance(code, dict) and code.keys() <= {"model", "data"} and all(
            isinstance(c, dict) and c.keys() <= {"builder", "sha256"} and is_import_path(c.get("builder"))
            and isinstance(c.get("sha256", ""), str) for c in code.values())):
        problems.append(f"code: must be {{model: {{builder: package.module:function, sha256: HEX}}, data: ...}}, as "
                        f"`hpsearch export` writes it, got {code!r}")
    return problems
