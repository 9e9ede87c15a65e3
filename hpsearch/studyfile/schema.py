"""A study file (YAML) -> a validated, frozen StudySpec (the types live in types.py).

Validation happens once, on load, before anything touches a storage: every problem is collected
and reported as `file: key: what is wrong (what is allowed)`. Raw YAML never travels further.
Loading builds nothing, so that reading a study never imports Optuna's samplers or torch: the checks
that build a sampler, a pruner or a model (search/preflight.py) run when a command is about to train.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import yaml

from hpsearch.errors import SpecError
from hpsearch.paths import name_problem
from hpsearch.studyfile import params as P
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.components import PRUNERS, SAMPLERS, Sampler
from hpsearch.studyfile.limits import MEASURES
from hpsearch.studyfile.types import (
    DATASETS,
    RESIZE_POLICIES,
    Budget,
    Component,
    Conditional,
    DatasetSpec,
    Distribution,
    InitSpec,
    Limits,
    StudySpec,
    Target,
    WarmStart,
)

TARGET_METRICS = ("val_accuracy", "test_accuracy")
TEST_OPT_IN = "test_set_stops_the_search"  # the target key that accepts a test_accuracy target, saying why

_TOP_KEYS = {
    "name": "a short name, used as the Optuna study name",
    "about": "one line on what the study is for",
    "dataset": "the dataset and its split",
    "budget": "epochs per trial and trials per run",
    "target": "the validation accuracy that ends the search: {metric: val_accuracy, value: 0.75}",
    "sampler": "the Optuna sampler",
    "pruner": "the Optuna pruner",
    "space": "the searched parameters",
    "fixed": "parameters held at one value",
    "seed": "the training seed shared by all trials",
    "baselines": "hand-made models from the reports, run as fixed trials between the sampled ones",
    "init": "a trained model to start from: {study: NAME, trial: best} or {weights: FILE}",
    "limits": "bounds a trial must keep to count: {params: N, train_seconds: S}",
    "objectives": "[val_accuracy, params] or [val_accuracy, train_seconds]: a Pareto front instead of one best",
    "warm_start": "another study whose finished trials a new study starts with, where they lie in its space: "
                  "{study: NAME, storage: URL}",
}
_REQUIRED = ("dataset", "budget")


class Problems:
    """Collects every problem in a study file so one run reports them all."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{key}: {message}")

    def unknown_keys(self, where: str, given: Mapping[str, Any], allowed: Mapping[str, Any] | set[str]) -> None:
        for key in given:
            if key not in allowed:
                self.add(f"{where}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; raise SpecError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read the file ({exc.strerror})"]) from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [yaml_problem(exc)]) from None
    return parse_spec(raw, path=str(path), default_name=path.stem)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last one silently, so
    a second `fixed:` block would drop the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        self.flatten_mapping(node)  # merge keys (<<) first, as SafeLoader does
        seen = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)


MAX_YAML_VALUES = 100_000  # values in a document with every alias expanded; a study file has a few hundred


def load_yaml(text: str) -> Any:
    """YAML text as Python values (safe types only), a key given twice in a mapping being an error.

    Aliases are counted as expanded before anything is built: nested ones (a "billion laughs") turn a few
    hundred bytes into billions of values, which every later step (validation, messages) would walk.
    """
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and (size := _expanded_size(node, {})) > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"its aliases expand to {size:,} values (at most {MAX_YAML_VALUES:,}): write "
                                 "the values out or use fewer nested aliases")
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` stands for with every alias expanded (an alias is the same node object, counted
    once per use but computed once: linear in the document's size). Capped past the limit."""
    if id(node) not in sizes:
        sizes[id(node)] = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        sizes[id(node)] = min(1 + sum(_expanded_size(c, sizes) for c in children), MAX_YAML_VALUES + 1)
    return sizes[id(node)]


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML syntax error in one line, where and what (PyYAML's own text spans several, with a caret)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}not valid YAML ({problem})"


def parse_spec(raw: Any, *, path: str, default_name: str | None) -> StudySpec:
    """A study as a mapping (a study file's YAML, or a dict given to api.run) -> StudySpec; `path` names it
    in messages, and relative paths in it are taken from its folder."""
    problems = Problems()
    if not isinstance(raw, dict):
        raise SpecError(path, ["the file must be a mapping of keys such as dataset, budget, space"])
    problems.unknown_keys("", raw, _TOP_KEYS)
    for key in _REQUIRED:
        if key not in raw:
            problems.add(key, f"missing ({_TOP_KEYS[key]})")

    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        problems.add("name", "must be a non-empty string")
    elif why := name_problem(name):
        problems.add("name", why)
    about = raw.get("about", "")
    if not isinstance(about, str):
        problems.add("about", "must be a string")
    seed = raw.get("seed", 0)
    if not P.is_seed(seed):
        problems.add("seed", f"must be an integer from 0 to {P.MAX_SEED}, got {shown(seed)}")

    dataset = _parse_dataset(raw.get("dataset"), problems) if "dataset" in raw else None
    budget = _parse_budget(raw.get("budget"), problems) if "budget" in raw else None
    target = _parse_target(raw.get("target"), problems)
    space = _parse_space(raw.get("space", {}), problems)
    fixed = _parse_fixed(raw.get("fixed", {}), problems)
    for both in sorted(set(space) & set(fixed)):
        problems.add(f"fixed.{both}", "is also in space: search it or fix it, not both")
    _check_trial_epochs(space, fixed, budget, problems)
    sampler = _parse_component("sampler", raw.get("sampler", {"name": "tpe"}), SAMPLERS, problems)
    pruner = _parse_component("pruner", raw.get("pruner", {"name": "none"}), PRUNERS, problems)

    init = _parse_init(raw["init"], path, problems) if "init" in raw else None
    warm_start = _parse_warm_start(raw["warm_start"], name, problems) if "warm_start" in raw else None
    _check_transfer_params(init, space, fixed, problems)
    _check_learning_rate(space, fixed, problems)
    baselines = _parse_baselines(raw.get("baselines", []), init, problems)
    limits = _parse_limits(raw["limits"], problems) if "limits" in raw else Limits()
    objectives = _parse_objectives(raw.get("objectives", ["val_accuracy"]), problems)
    if sampler is not None:
        _check_sampler(SAMPLERS[sampler.name], objectives, problems)

    if problems.lines:
        raise SpecError(path, problems.lines)
    return StudySpec(name=name, path=path, about=about, dataset=dataset, budget=budget, target=target,
                     sampler=sampler, pruner=pruner, space=space, fixed=fixed, seed=seed, baselines=baselines,
                     init=init, limits=limits, objectives=objectives, warm_start=warm_start)


def _mapping(value: Any, key: str, problems: Problems) -> dict | None:
    if not isinstance(value, dict):
        problems.add(key, f"must be a mapping, got {shown(value)}")
        return None
    return value


def _parse_dataset(value: Any, problems: Problems) -> DatasetSpec | None:
    if isinstance(value, str):
        value = {"name": value}
    value = _mapping(value, "dataset", problems)
    if value is None:
        return None
    folder_keys = {"path", "image_size", "resize"}
    allowed = {"name", "validation", "test", "split_seed", "data_dir", "download"} | folder_keys
    problems.unknown_keys("dataset.", value, allowed)
    name = value.get("name")
    known = isinstance(name, str) and name in DATASETS
    if not known:
        problems.add("dataset.name", f"unknown dataset {shown(name)} (allowed: {', '.join(DATASETS)})")
    if name == "imagefolder":
        value = {**value, "image_size": _parse_image_folder(value, problems)}
    else:
        for key in sorted(folder_keys & value.keys()):
            problems.add(f"dataset.{key}", "only for dataset imagefolder")
    problems.lines += _split_problems(value)
    if not isinstance(value.get("data_dir", ""), (str, type(None))):
        problems.add("dataset.data_dir", "must be a path")
    if not isinstance(value.get("download", True), bool):
        problems.add("dataset.download", "must be true or false")
    if not known:  # reported above; a spec without a usable name goes no further
        return None
    return DatasetSpec(**{k: v for k, v in value.items() if k in allowed})


def config_dataset(value: Any) -> tuple[DatasetSpec | None, list[str]]:
    """An exported config's dataset (DatasetSpec.recorded), checked as a study file's is, with the split
    given in full: a default filled in here could differ from the study's."""
    problems = Problems()
    if isinstance(value, dict):
        for key in ("validation", "test", "split_seed"):
            if key not in value:
                problems.add(f"dataset.{key}", "missing (`hpsearch export` writes it)")
        for key in ("data_dir", "download"):
            if key in value:
                problems.add(f"dataset.{key}", "belongs to the machine, not the config: give --data-dir to `train`")
    dataset = _parse_dataset(value, problems)
    return (None if problems.lines else dataset), problems.lines


def _split_problems(dataset: Mapping[str, Any]) -> list[str]:
    """What is wrong with a dataset's validation, test and split_seed, in a study file or an exported config."""
    problems = []
    for key in ("validation", "test"):
        fraction = dataset.get(key, 0.1 if key == "validation" else 0.2)
        if not P.is_number(fraction) or fraction <= 0 or (1 <= fraction and not P.is_int(fraction)):
            problems.append(f"dataset.{key}: must be a fraction in (0, 1) or a whole count, got {shown(fraction)}")
    if not P.is_seed(split_seed := dataset.get("split_seed", 0)):
        problems.append(f"dataset.split_seed: must be an integer from 0 to {P.MAX_SEED}, got {shown(split_seed)}")
    return problems


def _parse_image_folder(value: Mapping[str, Any], problems: Problems) -> tuple[int, int] | None:
    """Check an imagefolder's path and resize; its image_size as (H, W), or None if invalid."""
    if not isinstance(value.get("path"), str) or not value["path"]:
        problems.add("dataset.path", f"must be the image folder (relative to the data folder, --data-dir, or "
                                     f"absolute), got {shown(value.get('path'))}")
    if value.get("resize", "squash") not in RESIZE_POLICIES:
        problems.add("dataset.resize", f"unknown policy {shown(value['resize'])} (allowed: {', '.join(RESIZE_POLICIES)})")
    size = value.get("image_size")
    sides = [size, size] if P.is_int(size) else size
    if isinstance(sides, list) and len(sides) == 2 and all(P.is_int(n) and 1 <= n <= 4096 for n in sides):
        return tuple(sides)
    problems.add("dataset.image_size", f"must be a side such as 96 or [height, width], each 1 to 4096 pixels "
                                       f"(every image is resized to it), got {shown(size)}")
    return None


def _parse_init(value: Any, path: str, problems: Problems) -> InitSpec | None:
    """The model to start from; a weights path is taken relative to the study file, like an include."""
    forms = "{study: NAME, trial: best} or {weights: FILE}"
    if not isinstance(value, dict) or ("study" in value) == ("weights" in value):
        problems.add("init", f"must be one of {forms}, got {shown(value)}")
        return None
    if "weights" in value:
        problems.unknown_keys("init.", value, {"weights"})
        weights = value["weights"]
        if not isinstance(weights, str) or not weights:
            problems.add("init.weights", f"must be a file path (relative to the study file's folder), got {shown(weights)}")
            return None
        return InitSpec(weights=str((Path(path).parent / Path(weights).expanduser()).absolute()))
    problems.unknown_keys("init.", value, {"study", "trial", "storage"})
    study, trial, storage = value["study"], value.get("trial", "best"), value.get("storage")
    if not isinstance(study, str) or not study:
        problems.add("init.study", f"must be a study name, got {shown(study)}")
    if trial != "best" and not (P.is_int(trial) and trial >= 0):
        problems.add("init.trial", f"must be best or a trial number, got {shown(trial)}")
    if storage is not None and not isinstance(storage, str):
        problems.add("init.storage", "must be a storage URL (default: the run's --storage)")
    return InitSpec(study=study, trial=trial, storage=storage)


def _parse_warm_start(value: Any, name: Any, problems: Problems) -> WarmStart | None:
    """The study to start from; its storage URL is never echoed (it may hold a password)."""
    if not isinstance(value, dict) or "study" not in value:
        problems.add("warm_start", "must be {study: NAME} or {study: NAME, storage: URL}")
        return None
    problems.unknown_keys("warm_start.", value, {"study", "storage"})
    study, storage = value["study"], value.get("storage")
    if not isinstance(study, str) or not study:
        problems.add("warm_start.study", f"must be a study name, got {shown(study)}")
        return None
    if storage is not None and (not isinstance(storage, str) or not storage):
        problems.add("warm_start.storage", "must be a storage URL (default: the run's --storage)")
        return None
    if study == name and storage is None:
        problems.add("warm_start.study", "names this study itself: name another study, or give its storage")
        return None
    return WarmStart(study=study, storage=storage)


def _check_transfer_params(init: InitSpec | None, space: Mapping[str, Any], fixed: Mapping[str, Any],
                           problems: Problems) -> None:
    """Transfer parameters need a model to start from; a source trial brings its own architecture."""
    for where, names in (("space", space), ("fixed", fixed)):
        for name in names:
            if init is None and name in P.TRANSFER:
                problems.add(f"{where}.{name}", "only for a study with init: (a trained model to start from)")
            elif init is not None and init.study is not None and name in P.ARCHITECTURE:
                problems.add(f"{where}.{name}", f"the architecture comes from init (study {init.study}'s trial "
                                                "config): search or fix only the other parameters")


def _check_learning_rate(space: Mapping[str, Any], fixed: Mapping[str, Any], problems: Problems) -> None:
    """lr_per_1024 replaces lr: a study gives one of them."""
    given = {**space, **fixed}
    if "lr" in given and "lr_per_1024" in given:
        where = "space" if "lr_per_1024" in space else "fixed"
        problems.add(f"{where}.lr_per_1024", "replaces lr (lr = lr_per_1024 x batch_size / 1024): give lr or "
                                             "lr_per_1024, not both")


def _parse_budget(value: Any, problems: Problems) -> Budget | None:
    value = _mapping(value, "budget", problems)
    if value is None:
        return None
    problems.unknown_keys("budget.", value, {"epochs", "trials", "timeout"})
    epochs, trials, timeout = value.get("epochs"), value.get("trials", 20), value.get("timeout")
    if not P.is_int(epochs) or epochs < 1:
        problems.add("budget.epochs", f"must be a whole number >= 1, got {shown(epochs)}")
    if not P.is_int(trials) or trials < 1:
        problems.add("budget.trials", f"must be a whole number >= 1, got {shown(trials)}")
    if timeout is not None and (not P.is_number(timeout) or timeout <= 0):
        problems.add("budget.timeout", f"must be a number of seconds > 0, got {shown(timeout)}")
    return Budget(epochs=epochs, trials=trials, timeout=timeout)


def _check_trial_epochs(space: Mapping[str, Distribution], fixed: Mapping[str, Any], budget: Budget | None,
                        problems: Problems) -> None:
    """A trial trains at most budget.epochs: `epochs` searches or fixes a shorter schedule, never a longer one."""
    if budget is None or not P.is_int(budget.epochs):
        return
    if "epochs" in fixed:
        values, key = [fixed["epochs"]], "fixed.epochs"
    elif "epochs" in space:
        dist = space["epochs"]
        values, key = (list(dist.choices), "space.epochs.choice") if dist.kind == "choice" else \
            ([dist.high], "space.epochs.int")
    else:
        return
    for value in values:
        if value > budget.epochs:
            problems.add(key, f"{value} is over the budget: a trial trains at most budget.epochs ({budget.epochs})")


def _parse_target(value: Any, problems: Problems) -> Target | None:
    if value is None:
        return None
    value = _mapping(value, "target", problems)
    if value is None:
        return None
    problems.unknown_keys("target.", value, {"metric", "value", TEST_OPT_IN})
    metric, threshold, why = value.get("metric", "val_accuracy"), value.get("value"), value.get(TEST_OPT_IN)
    if metric not in TARGET_METRICS:
        problems.add("target.metric", f"unknown metric {shown(metric)} (allowed: {', '.join(TARGET_METRICS)})")
    elif metric == "test_accuracy" and why is None:
        problems.add("target.metric", "test_accuracy lets the test set decide when the search stops, so the test "
                                      "accuracy reported at the stop is biased upward: use val_accuracy (test "
                                      f"accuracy is still reported beside it), or give target.{TEST_OPT_IN}: "
                                      '"why" to accept the bias')
    if why is not None and (not isinstance(why, str) or not why.strip()):
        problems.add(f"target.{TEST_OPT_IN}", f"must say why the test set may stop the search, got {shown(why)}")
    elif why is not None and metric != "test_accuracy":
        problems.add(f"target.{TEST_OPT_IN}", f"only for metric test_accuracy (the target's metric is {shown(metric)})")
    if not P.is_number(threshold) or not 0 < threshold <= 1:
        problems.add("target.value", f"must be an accuracy in (0, 1], got {shown(threshold)}")
    return Target(metric=metric, value=threshold, why=why if metric == "test_accuracy" else None)


def _parse_limits(value: Any, problems: Problems) -> Limits:
    value = _mapping(value, "limits", problems)
    if value is None:
        return Limits()
    problems.unknown_keys("limits.", value, MEASURES)
    if not value:
        problems.add("limits", "is empty: give params (a parameter count), train_seconds, or both")
    params, seconds = value.get("params"), value.get("train_seconds")
    if params is not None and (not P.is_int(params) or params < 1):
        problems.add("limits.params", f"must be a whole number of parameters >= 1, such as 1000000, got {shown(params)}")
    if seconds is not None and (not P.is_number(seconds) or seconds <= 0):
        problems.add("limits.train_seconds", f"must be a number of seconds > 0, such as 120, got {shown(seconds)}")
    return Limits(params=params, train_seconds=seconds)


def _parse_objectives(value: Any, problems: Problems) -> tuple[str, ...]:
    """[val_accuracy] (the default), or val_accuracy (maximised) and one measure (minimised)."""
    allowed = " or ".join(f"[val_accuracy, {name}]" for name in MEASURES)
    if (not isinstance(value, list) or not 1 <= len(value) <= 2 or value[0] != "val_accuracy"
            or (len(value) == 2 and (not isinstance(value[1], str) or value[1] not in MEASURES))):
        problems.add("objectives", f"must be {allowed} (val_accuracy first, maximised; the other minimised), "
                                   f"got {shown(value)}")
        return ("val_accuracy",)
    return tuple(value)


def _parse_component(key: str, value: Any, table: Mapping[str, Any], problems: Problems) -> Component | None:
    """A sampler or pruner as written: a name in `table` (components.py), or a mapping of its name and
    options (the options are checked by search/preflight.py, which builds it)."""
    if isinstance(value, str):
        value = {"name": value}
    value = _mapping(value, key, problems)
    if value is None:
        return None
    name = value.get("name")
    if not isinstance(name, str) or name not in table:
        problems.add(f"{key}.name", f"unknown {key} {shown(name)} (allowed: {', '.join(table)})")
        return None
    return Component(name, {k: v for k, v in value.items() if k != "name"})


def _check_sampler(row: Sampler, objectives: tuple[str, ...], problems: Problems) -> None:
    """A sampler the study's objectives and this machine allow."""
    if len(objectives) > 1 and row.single_objective:
        two = ", ".join(s.name for s in SAMPLERS.values() if not s.single_objective)
        problems.add("sampler.name", f"{row.name} optimises one objective, and objectives: asks for two "
                                     f"(allowed with two: {two})")
    elif row.package is not None and find_spec(row.package) is None:
        problems.add("sampler.name", f"{row.name} needs the Python package {row.package}, which is not installed: "
                                     f"`pip install {row.package}`, or choose another sampler")


def _parse_space(value: Any, problems: Problems) -> dict[str, Distribution | Conditional]:
    value = _mapping(value, "space", problems)
    if value is None:
        return {}
    space: dict[str, Distribution | Conditional] = {}
    for name, dist in value.items():
        key = f"space.{name}"
        param = P.BY_NAME.get(name)
        if param is None:
            problems.add(key, f"unknown parameter (allowed: {', '.join(P.BY_NAME)})")
            continue
        if isinstance(dist, dict) and "by" in dist:
            continue  # once the choices it depends on are known
        parsed = _parse_distribution(param, dist, key, problems)
        if parsed is not None:
            space[name] = parsed
    for name, dist in value.items():
        if name in P.BY_NAME and isinstance(dist, dict) and "by" in dist:
            parsed = _parse_conditional(P.BY_NAME[name], dist, space, problems)
            if parsed is not None:
                space[name] = parsed
    return space


def _parse_conditional(param: P.Param, dist: Mapping[Any, Any], space: Mapping[str, Any],
                       problems: Problems) -> Conditional | None:
    """{by: CHOICE, VALUE: distribution, ...}: a distribution for each value of a choice decided before this
    parameter (earlier in the parameter table) that every trial has."""
    key, by = f"space.{param.name}", dist["by"]
    order = [p.name for p in P.PARAMS]
    allowed = [name for name in order[:order.index(param.name)] if name in P.ALWAYS_ACTIVE]
    if by not in allowed:
        problems.add(f"{key}.by", f"{shown(by)} cannot decide {param.name}'s range (allowed: a parameter decided "
                                  f"before it that every trial has: {', '.join(allowed) or 'none'})")
        return None
    choices = space.get(by)
    if not isinstance(choices, Distribution) or choices.kind != "choice":
        problems.add(f"{key}.by", f"{by} must be searched as {{choice: [...]}} in space to decide {param.name}'s range")
        return None
    branches = []
    for value, branch in dist.items():
        if value == "by":
            continue
        if value not in choices.choices:
            problems.add(f"{key}.{value}", f"is not one of {by}'s choices ({', '.join(map(str, choices.choices))})")
        elif isinstance(branch, dict) and "by" in branch:
            problems.add(f"{key}.{value}", "a branch is one distribution (a range or a choice), not another by:")
        elif (parsed := _parse_distribution(param, branch, f"{key}.{value}", problems)) is not None:
            branches.append((value, parsed))
    missing = [str(value) for value in choices.choices if value not in dict(branches) and value not in dist]
    if missing:
        problems.add(key, f"has no range for {by} {', '.join(missing)}: give one for each of {by}'s choices")
    if len(branches) != len(choices.choices):
        return None
    return Conditional(by=by, branches=tuple(branches))


def _parse_distribution(param: P.Param, dist: Any, key: str, problems: Problems) -> Distribution | None:
    numeric = param.kind in ("int", "float")
    forms = f"{{{param.kind}: [low, high]}} or {{choice: [...]}}" if numeric else "{choice: [...]}"
    if not isinstance(dist, dict) or not dist:
        problems.add(key, f"must be a distribution such as {forms}, got {shown(dist)} (use fixed: for one value)")
        return None
    kind = next(iter(dist))
    if kind == "choice":
        problems.unknown_keys(f"{key}.", dist, {"choice"})
        choices = dist["choice"]
        if not isinstance(choices, list) or not choices:
            problems.add(f"{key}.choice", "must be a non-empty list of values")
            return None
        bad = [(c, why) for c in choices if (why := param.check_value(c))]
        for choice, why in bad:
            problems.add(f"{key}.choice", f"{shown(choice)} {why}")
        return None if bad else Distribution("choice", choices=tuple(_freeze(c) for c in choices))
    if kind != param.kind:
        problems.add(key, f"{param.name} is {_kind_text(param)}: write {forms}")
        return None
    problems.unknown_keys(f"{key}.", dist, {kind, "log", "step"})
    bounds, log, step = dist[kind], dist.get("log", False), dist.get("step")
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(P.is_number(b) for b in bounds)):
        problems.add(f"{key}.{kind}", f"must be [low, high], got {shown(bounds)}")
        return None
    low, high = bounds
    for bound in bounds:
        if why := param.check_value(bound):
            problems.add(f"{key}.{kind}", f"{shown(bound)} is out of range: {param.name} {why}")
            return None
    if low >= high:
        what = "empty" if low == high else "inverted"
        problems.add(f"{key}.{kind}", f"{what} range [{low}, {high}]: low must be below high (use fixed: for one value)")
        return None
    if not isinstance(log, bool):
        problems.add(f"{key}.log", "must be true or false")
    elif log and low <= 0:
        problems.add(f"{key}.log", f"a log range needs low > 0, got {low}")
    if step is not None and (not P.is_number(step) or step <= 0 or (kind == "int" and not P.is_int(step))):
        problems.add(f"{key}.step", f"must be a positive {'integer' if kind == 'int' else 'number'}")
    elif step is not None and log:
        problems.add(f"{key}.step", "cannot be combined with log: true")
    return Distribution(kind, low=low, high=high, log=log, step=step)


def _parse_baselines(value: Any, init: InitSpec | None, problems: Problems) -> tuple[str, ...]:
    """Known names, each taking the architecture it can: a baseline that starts from trained weights needs init:,
    and a study with init: takes the source model's architecture (whether each fits the data is
    search/preflight.py's to check: it builds them)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add("baselines", f"must be a list of baseline names, got {shown(value)}")
        return ()
    if len(set(value)) != len(value):
        problems.add("baselines", "lists a baseline twice")
    for name in dict.fromkeys(value):
        baseline = BASELINES.get(name)
        if baseline is None:
            problems.add("baselines", f"unknown baseline {shown(name)} (allowed: {', '.join(BASELINES)}; "
                                      "`hpsearch baselines` lists them)")
        elif baseline.transfer and init is None:
            problems.add("baselines", f"{name} starts from trained weights: it needs init: (the model to start from)")
        elif not baseline.transfer and init is not None:
            transfer = ", ".join(b.name for b in BASELINES.values() if b.transfer)
            problems.add("baselines", f"{name} has an architecture of its own, and a study with init: takes the "
                                      f"source model's (baselines that start from it: {transfer})")
    return tuple(value)


def _parse_fixed(value: Any, problems: Problems) -> dict[str, Any]:
    value = _mapping(value, "fixed", problems)
    if value is None:
        return {}
    fixed = {}
    for name, v in value.items():
        param = P.BY_NAME.get(name)
        if param is None:
            problems.add(f"fixed.{name}", f"unknown parameter (allowed: {', '.join(P.BY_NAME)})")
        elif why := param.check_value(v):
            problems.add(f"fixed.{name}", f"{shown(v)} {why}")
        else:
            fixed[name] = v
    return fixed


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _kind_text(param: P.Param) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true/false", "choice": "a choice",
            "ints": "a list of integers"}[param.kind]


MAX_SHOWN = 80  # characters of a value echoed in a message


def shown(value: Any) -> str:
    """A value as a message shows it: JSON-like, control characters escaped, cut to a short excerpt."""
    text = json.dumps(value) if isinstance(value, (str, list, dict, bool, type(None))) else repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN - 20]}... ({len(text):,} characters)"
