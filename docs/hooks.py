"""The generated parts of the docs, written from the code's own tables at every `mkdocs build`.

A page asks for a generated part with a marker line, `<!-- generated: NAME -->`; on_page_markdown
replaces it with GENERATED[NAME](), and drops a paragraph that starts with `<!-- unbuilt -->` (a note
for whoever reads the Markdown unbuilt, on GitHub). Nothing generated is committed, so nothing can go stale:
the study-file reference comes from hpsearch.studyfile (params, families, datasets, components,
baselines, the shipped studies), the command reference from click's own `--help`, the Python API's from
hpsearch.api's names and docstrings, and the benchmarks page from bench/results/*.json. tests/test_docs.py
calls the same functions. The demo's transcript, docs/transcripts/digits-quick.txt, is the one copy of the demo
every page quotes (`demo`, `demo_ending`); README.md, read unbuilt on GitHub, holds a copy that the tests compare.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # document this checkout's code, not whichever hpsearch is installed
    sys.path.insert(0, str(ROOT))
import hpsearch  # now, while the path holds: mkdocs restores sys.path once this module is loaded

MARKER = re.compile(r"^<!-- generated: ([a-z_]+) -->$", re.MULTILINE)
# A paragraph for readers of the unbuilt Markdown (on GitHub), dropped from the site.
UNBUILT = re.compile(r"^<!-- unbuilt -->\n(?:.+\n)*\n?", re.MULTILINE)


def _cell(value: Any) -> str:
    """A value as a Markdown table cell: code, with the pipe escaped."""
    text = value if isinstance(value, str) else json.dumps(value)
    return "`" + text.replace("|", "\\|") + "`"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- the study file --------------------------------------------------------------------------------------

def top_keys() -> str:
    from hpsearch.studyfile.schema import _REQUIRED, _TOP_KEYS

    return _table(("key", "what it holds"),
                  ((f"`{k}`" + (" (required)" if k in _REQUIRED else ""), text) for k, text in _TOP_KEYS.items()))


def _allowed(param) -> str:
    if param.kind == "choice":
        return ", ".join(_cell(c) for c in param.choices)
    if param.kind == "bool":
        return "`true`, `false`"
    if param.kind == "ints":
        return f"list of integers ≥ {param.low:g}"
    return f"{param.kind} in `{param.bounds_text()}`"


def parameters() -> str:
    """Every parameter of studyfile/params.py in the table's order, with the families that take it; then those of
    the installed plugins' families (studyfile/plugins.py)."""
    from hpsearch.studyfile.plugins import plugin_families
    from hpsearch.studyfile.families import FAMILIES, MODEL_PARAMS
    from hpsearch.studyfile.params import PARAMS, builder_params

    rows = []
    for p in PARAMS:
        default = "none" if p.default is None else _cell(p.default)
        own = [f"{f.name}: {_cell(f.defaults[p.name])}" for f in FAMILIES.values() if p.name in f.defaults]
        if own:
            default += " (" + ", ".join(own) + ")"
        if p.name in MODEL_PARAMS:
            applies = " Families: " + ", ".join(f.name for f in FAMILIES.values() if p.name in f.params) + "."
        else:
            applies = " Transfer studies (`init:`) only." if p.transfer else ""
        name = f"<span id=\"{p.name}\">`{p.name}`</span><br>{p.kind}" + ("<br>*architecture*" if p.architecture else "")
        rows.append((name, default, _allowed(p), p.help + applies))
    for family in plugin_families().values():
        for p in builder_params(family.name):
            default = "none" if p.default is None else _cell(p.default)
            rows.append((f"`{p.name}`<br>{p.kind}<br>*architecture*", default, _allowed(p),
                         f"{p.help} Family {family.name} (a plugin's) only."))
    return _table(("parameter", "default", "allowed", "what it does"), rows)


def families() -> str:
    """hpsearch's families, then the installed plugins'."""
    from hpsearch.studyfile.plugins import all_families
    from hpsearch.studyfile.families import BUILDER_PREFIX

    def takes(f) -> str:
        if f.builder is not None:
            return ", ".join(f"`{BUILDER_PREFIX}{p.name}`" for p in f.builder_params) or "none"
        return ", ".join(f"`{p}`" for p in sorted(f.params)) or "none (its own fixed architecture)"

    rows = ((f"`{f.name}`", f.about + (f" (a plugin's, built by `{f.builder}`)" if f.builder else ""), str(f.min_side),
             "any" if f.channels is None else str(f.channels), takes(f)) for f in all_families().values())
    return _table(("family", "what it is", "smallest image side", "channels", "model parameters it takes"), rows)


def datasets() -> str:
    """hpsearch's datasets, then the installed plugins'."""
    from hpsearch.studyfile.plugins import all_datasets

    def shape(d):
        if d.input_shape is not None:
            return " × ".join(map(str, d.input_shape))
        return "known once read" if d.builder else "3 × `dataset.image_size`"

    rows = ((f"`{d.name}`" + (f" (a plugin's, read by `{d.builder}`)" if d.builder else ""), shape(d),
             "known once read" if d.classes is None else str(d.classes)) for d in all_datasets().values())
    return _table(("dataset", "input (C × H × W)", "classes"), rows)


def dataset_keys() -> str:
    from dataclasses import MISSING, fields

    from hpsearch.studyfile.types import DatasetSpec

    rows = []
    for f in fields(DatasetSpec):
        default = "required" if f.default is MISSING else ("none" if f.default is None else _cell(f.default))
        rows.append((f"`{f.name}`", default))
    return _table(("`dataset:` key", "default"), rows)


def _options(cls: type) -> str:
    import inspect

    from hpsearch.search.samplers import option_names

    names = option_names(cls)
    shown = []
    for name, p in inspect.signature(cls).parameters.items():
        if name in names:
            default = "" if p.default is inspect.Parameter.empty else f"={p.default!r}"
            shown.append(f"`{name}{default}`")
    return ", ".join(shown)


def samplers() -> str:
    from hpsearch.search.samplers import optuna_class
    from hpsearch.studyfile.components import SAMPLERS

    rows = []
    for s in SAMPLERS.values():
        notes = [f"`{k}` ≥ {v}" for k, v in s.least.items()]
        if s.single_objective:
            notes.append("one objective only")
        if s.package:
            notes.append(f"needs `pip install {s.package}`")
        rows.append((f"`{s.name}`", f"`{s.optuna_class}`", _options(optuna_class(s)), "; ".join(notes)))
    return _table(("name", "Optuna class", "options (Optuna's defaults)", "hpsearch adds"), rows)


def pruners() -> str:
    from hpsearch.search.samplers import optuna_class
    from hpsearch.studyfile.components import PRUNERS

    rows = []
    for p in PRUNERS.values():
        notes = [f"`min_epochs` → `{p.min_epochs_argument}`"] if p.min_epochs_argument else ["`min_epochs` ignored"]
        if p.epochs_argument:
            notes.append(f"`{p.epochs_argument}` defaults to the study's epochs")
        notes += [f"`{k}` defaults to {v!r}" for k, v in p.defaults.items()]
        notes += [f"`{k}` ≥ {v}" for k, v in p.least.items()]
        rows.append((f"`{p.name}`", f"`{p.optuna_class}`", _options(optuna_class(p)) or "none", "; ".join(notes)))
    return _table(("name", "Optuna class", "options (Optuna's defaults)", "hpsearch adds"), rows)


def baselines() -> str:
    from hpsearch.studyfile.baselines import BASELINES

    rows = ((f"`{b.name}`", f"report {b.report}", b.dataset, f"{b.built_count:,}", b.reported) for b in BASELINES.values())
    return _table(("baseline", "source", "dataset", "parameters", "reported"), rows)


def studies() -> str:
    from hpsearch.studyfile import catalog

    rows = []
    for path in catalog.shipped_study_files():
        spec = catalog.load_study_spec(str(path))
        rows.append((f"`{spec.name}`", spec.about, spec.dataset.name, str(spec.budget.epochs), str(spec.budget.trials),
                     spec.describe_target(), ", ".join(f"`{b}`" for b in spec.baselines) or "none"))
    return _table(("study", "about", "dataset", "epochs", "trials a run", "target", "baselines"), rows)


def studies_files() -> str:
    """Each shipped study file as it is, under a heading of its own."""
    from hpsearch.studyfile import catalog

    parts = []
    for path in catalog.shipped_study_files():
        parts.append(f"### {path.stem}\n\n```yaml\n{path.read_text().rstrip()}\n```\n")
    return "\n".join(parts)


# --- the commands ------------------------------------------------------------------------------------------

def command_names() -> list[str]:
    import click

    from hpsearch.cli import main

    ctx = click.Context(main, info_name="hpsearch")
    return [n for n in main.list_commands(ctx) if not main.get_command(ctx, n).hidden]


def commands() -> str:
    """`hpsearch --help` and each command's `--help`, as click prints them."""
    import click

    from hpsearch.cli import main

    def help_of(command: click.Command, ctx: click.Context) -> str:
        with ctx:
            return command.get_help(ctx)

    # The group's own settings (-h, defaults shown), at the 80 columns a code block shows whole.
    width = {"max_content_width": 80, "terminal_width": 80}
    root = click.Context(main, info_name="hpsearch", **main.context_settings, **width)
    parts = [f"## hpsearch\n\n```text\n{help_of(main, root)}\n```\n"]
    for name in command_names():
        command = main.get_command(root, name)
        parts.append(f"## {name}\n\n```text\n{help_of(command, click.Context(command, info_name=name, parent=root, **width))}\n```\n")
    return "\n".join(parts)


# --- the Python API ---------------------------------------------------------------------------------------

def python_api() -> str:
    """Every public name of hpsearch.api in __all__'s order: a function's signature (annotations left to its
    docstring) and docstring, a result type's fields with their types."""
    import dataclasses
    import inspect

    from hpsearch import api

    parts = []
    for name in api.__all__:
        obj = getattr(api, name)
        doc = inspect.getdoc(obj) or ""
        if dataclasses.is_dataclass(obj):
            fields = "\n".join(f"    {f.name}: {f.type}" for f in dataclasses.fields(obj))
            parts.append(f"### {name}\n\n```python\n@dataclass(frozen=True)\nclass {name}:\n{fields}\n```\n\n{doc}\n")
            continue
        signature = inspect.signature(obj)
        bare = signature.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                             for p in signature.parameters.values()],
                                 return_annotation=inspect.Signature.empty)
        parts.append(f"### {name}\n\n```python\napi.{name}{bare}\n```\n\n{doc}\n")
    return "\n".join(parts)


# --- the benchmarks ----------------------------------------------------------------------------------------

def _provenance(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return d.get("provenance", d)


WHAT = {  # what each benchmark script measures, in one line
    "pipeline.py": "One model trained for a few epochs through the usual torchvision DataLoader and through "
                   "hpsearch's device-resident pipeline, in one run: seconds per epoch and test accuracy.",
    "scaling.py": "Independent workers on one PostgreSQL study for a fixed time: finished trials per minute, "
                  "repeated parameter draws, and what the study lock costs a trial.",
    "recipes.py": "A plain CNN against the same CNN with the speed-run recipes, at equal epochs on a CIFAR-10 "
                  "subset, then each recipe removed in turn.",
    "big_study.py": "What a study's size costs a run: the same trials on an empty study and on a large one.",
    "mlflow_overhead.py": "What `--mlflow` costs a trial: the same digits runs with and without it, in turn, to a "
                          "local MLflow store: wall seconds per epoch.",
    "time_to_target.py": "The mission's study from an empty storage until a sampled trial meets its target on "
                         "validation, `hpsearch run` against a hand-written Optuna script on the same study, in turn.",
    "trial_cache.py": "The reads a run makes around each new trial on a big study, through hpsearch's trial cache "
                      "and through Optuna's own, in turn.",
    "status.py": "`hpsearch status` as a fresh process on a big study, against an empty study, against "
                 "`hpsearch best` on the big one and, given another checkout, against that tree's `status`, in turn.",
}


def _headline(d: Mapping[str, Any]) -> str:
    """What a result file measured, in a sentence or a small table; one rule per benchmark script."""
    command = _provenance(d).get("command", "")
    if "pipeline.py" in command:
        u, h = d["pipelines"]["usual"], d["pipelines"]["hpsearch"]
        return _table(("pipeline", "s/epoch (steady)", "images/s", "test accuracy"), [
            ("usual DataLoader", f"{u['steady_epoch_s']:.2f}", f"{u['steady_images_per_s']:,.0f}", f"{u['test_accuracy']:.2%}"),
            ("hpsearch", f"{h['steady_epoch_s']:.2f}", f"{h['steady_images_per_s']:,.0f}", f"{h['test_accuracy']:.2%}"),
        ]) + f"\nSpeed-up {d['speedup_steady']:.2f}× ({d['dataset']}, model `{d['model']}`, {d['epochs']} epochs).\n"
    if "scaling.py" in command:
        return _table(("workers", "trials/min", "vs 1", "repeated draws", "study lock per trial"), (
            (str(r["workers"]), f"{r['finished_per_minute']:.1f}", f"{r['ratio']:.2f}", str(r["repeated_params"]),
             f"{r['lock_ms_per_trial']:.0f} ms") for r in d["rows"]))
    if "recipes.py" in command:
        s = d["summary"]
        rows = [(k, str(v["n"]), f"{v['test_accuracy_mean']:.2%}" + (f" ± {v['test_accuracy_std']:.2%}" if v["test_accuracy_std"] else ""))
                for k, v in s.items()]
        return _table(("config", "seeds", "test accuracy"), rows) + f"\nThe recipes add {d['gain_points']:.2f} points.\n"
    if "big_study.py" in command:
        m = d["median_s"]
        return (f"Ten one-epoch digits trials: {m['empty']:.2f} s on an empty study, {m['big']:.2f} s on one holding "
                f"{d['stored']:,} trials (medians of {d['repeats']}): {d['ratio']:.2f}× as long.\n")
    if "mlflow_overhead.py" in command:
        m = d["median_s_per_epoch"]
        return (f"Seconds per epoch, median of {d['rounds']} rounds of {d['trials_per_run']} digits trials each: "
                f"{m['without']:.4f} without `--mlflow`, {m['with']:.4f} with it (MLflow {d['mlflow']}): "
                f"{d['ratio_with_to_without']:.3f}×.\n")
    if "trial_cache.py" in command:
        m = d["median_s"]
        return (f"The reads around {d['steps']} new trials on a study of {d['stored']:,}: {m['optuna']:.3f} s through "
                f"Optuna's cache, {m['hpsearch']:.3f} s through hpsearch's (medians of {d['repeats']}): "
                f"{d['ratio']:.2f}× ({d['cpu_ratio']:.2f}× in CPU seconds).\n")
    if "status.py" in command:
        m = d["median_s"]
        return (f"`hpsearch status` on a study of {d['stored']:,} trials: {m['status_big']:.2f} s; on an empty study "
                f"{m['status_empty']:.2f} s; `hpsearch best` on the big one {m['best_big']:.2f} s"
                + (f"; the same `status` at commit {d['other'][:7]} {m['status_big_other']:.2f} s" if d.get("other") else "")
                + f" (medians of {d['repeats']}).\n")
    if "time_to_target.py" in command:
        rows = [(r["arm"], str(r["seed"]),
                 f"{r['wall_s_to_target'] / 60:.1f} min" if r["reached"] else f"not met in {d['cap_minutes']:g} min",
                 f"{r['trial_val_accuracy']:.2%} / {r['trial_test_accuracy']:.2%}" if r["reached"] else "")
                for r in d["runs"]]
        medians = "; ".join(f"{arm} {s['median_minutes']} min" if s["median_met_within_cap"] else f"{arm} not met"
                            for arm, s in d["summary"].items() if s["seeds"])
        return _table(("arm", "seed", "time to target", "val / test at it"), rows) + f"\nMedians: {medians}.\n"
    return ""


def benchmarks() -> str:
    parts = []
    results = sorted((ROOT / "bench" / "results").glob("*.json"))
    for path in results:
        d = json.loads(path.read_text())
        p = _provenance(d)
        cpu = f"{p.get('device', '?')}, {p.get('cpu_cores', '?')} cores" if p.get("device_type") == "cpu" else p.get("device", "?")
        versions = ", ".join(f"{k} {p[k]}" for k in ("torch", "optuna", "cuda") if p.get(k))
        load = p.get("load_average_start")
        parts.append(
            f"### {path.stem}\n\n"
            f"- **date** {p.get('date', '?')[:16].replace('T', ' ')} UTC; **device** {cpu}; {versions}\n"
            + (f"- **load average** at the start {load[0]:.2f}\n" if load else "")
            + f"- **command** `{p.get('command', '?')}`\n"
            f"- **file** `bench/results/{path.name}`\n\n"
            + "".join(f"{text}\n\n" for script, text in WHAT.items() if script in p.get("command", ""))
            + _headline(d))
    return "\n".join(parts)


# --- where the data and the baselines come from ---------------------------------------------------------------

def data_sources() -> str:
    """What `hpsearch fetch` downloads: each dataset's official files, size, checksum, licence and citation."""
    from hpsearch.training.fetch import SOURCES

    rows = []
    for s in SOURCES.values():
        files = "<br>".join(f"[`{d.file}`]({d.url}), {d.size:,} bytes, "
                            + (f"sha256 `{d.sha256}`" if d.sha256 else "no published checksum: checked by size")
                            + f"; published by {d.checksum_from}" for d in s.downloads)
        rows.append((f"`{s.name}`", f"{s.about}. [Home page]({s.homepage}); becomes `DATA/{s.folder}`", files,
                     s.licence, s.cite))
    return _table(("name", "what and where", "official files", "licence", "cite"), rows)


# The seed reports: course reports whose hand-made models studyfile/baselines.py rebuilds. They are not shipped
# (their authors hold them); this is what identifies each.
SEED_REPORTS = {
    "000": "Enwin Anson, Antoine Dufour: *Assignment 1 report - deep learning* (undated): a Keras-tutorial CNN on "
           "cats vs dogs (cats_and_dogs_filtered) and on Stanford Dogs, then fine-tuning experiments",
    "001": "Jury Andrea D'Onofrio: *Deep Learning: Assignment 2*, October 2022: a CNN on CIFAR-10 (torchvision)",
    "002": "Martynas Lukosevicius, Alejo Perez Gomez: *TBMI26 – Computer Assignment Reports, Deep Learning*, "
           "March 2021: fully connected and convolutional Keras models on CIFAR-10",
    "003": "Hala Djeghim: *TP RF: Convolutionnal Neural Network (CNN)*, December 19, 2021: the PyTorch tutorial's "
           "CNN on CIFAR-10, widened and deepened",
    "004": "Matteo D'Ospina: *Homework 3 - Deep Learning* (undated): a fully connected net, CNNs and a ResNet on "
           "CIFAR-100",
}


def seed_reports() -> str:
    """Each seed report: who wrote it, its title and date, and each model hpsearch rebuilds from it with its
    dataset and the accuracy the report gives."""
    from hpsearch.studyfile.baselines import BASELINES

    rows = []
    for number, said in SEED_REPORTS.items():
        models = [b for b in BASELINES.values() if b.report.split()[0] == number]
        rows.append((number, said, "<br>".join(
            f"`{b.name}` ({b.report.split(' ', 1)[1]}): {b.dataset}, {b.reported}" for b in models)))
    return _table(("report", "authors, title, date, what it trains", "models rebuilt as baselines: dataset, reported"),
                  rows)


# --- the demo's transcript ---------------------------------------------------------------------------------

DEMO = ROOT / "docs" / "transcripts" / "digits-quick.txt"  # written by docs/record_demo.py; README.md holds a copy
DEMO_REPEATS = ("On the same CPU type and library versions, the trials, their order, parameter counts and "
                "accuracies repeat exactly; the seconds, the pace and which progress lines appear (one each 5 s of "
                "a trial) do not, and a busy machine inflates the seconds.")


def demo_transcript() -> tuple[str, list[str]]:
    """(how it was recorded, the transcript's lines from its `$ hpsearch run` on): the one copy every page quotes."""
    first, *lines = DEMO.read_text().splitlines()
    return first.removeprefix("# "), lines


def _quoted(lines: list[str], what: str) -> str:
    said, _ = demo_transcript()
    return (f"{what} `hpsearch run --study digits-quick` in an empty folder, {said} "
            f"{DEMO_REPEATS}\n\n```console\n" + "\n".join(lines) + "\n```\n")


def demo() -> str:
    """The whole demo transcript, with when and on what it was recorded."""
    return _quoted(demo_transcript()[1], "The whole transcript of")


def demo_ending() -> str:
    """The demo's last lines: the search against the baselines, the time to target and the pace."""
    lines = demo_transcript()[1]
    return _quoted(lines[lines.index("search against the baselines:"):], "The end of")


def changelog() -> str:
    """CHANGELOG.md, the one copy, as the site's changelog page."""
    return (ROOT / "CHANGELOG.md").read_text()


GENERATED: dict[str, Callable[[], str]] = {
    "top_keys": top_keys, "parameters": parameters, "families": families, "datasets": datasets,
    "dataset_keys": dataset_keys, "samplers": samplers, "pruners": pruners, "baselines": baselines,
    "studies": studies, "studies_files": studies_files, "commands": commands, "python_api": python_api,
    "benchmarks": benchmarks, "demo": demo, "demo_ending": demo_ending,
    "data_sources": data_sources, "seed_reports": seed_reports, "changelog": changelog,
}


def expand(markdown: str) -> str:
    """`markdown` with every marker replaced by its generated part; an unknown marker is an error."""
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATED:
            raise KeyError(f"unknown generated part {name!r} (known: {', '.join(GENERATED)})")
        return GENERATED[name]().rstrip("\n")

    return MARKER.sub(one, UNBUILT.sub("", markdown))


def on_config(config):  # mkdocs hook
    """The version in the site's title, on every page: docs for another version read as such."""
    config["site_name"] = f"hpsearch {hpsearch.__version__}"
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs hook
    return expand(markdown)
