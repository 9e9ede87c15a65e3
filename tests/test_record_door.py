"""The record is the only door to what hpsearch stores on Optuna's trials and studies: outside hpsearch/record/ and
the storage adapter, no module of the package reads or writes Optuna's user or system attributes, or spells the
name of one that only the record reads. Read from each module's syntax tree, so a comment or a docstring may
still name them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hpsearch
from hpsearch.record import keys as K

PACKAGE = Path(hpsearch.__file__).parent
DOORS = ("record/", "storage/", "storage.py", "trialrows.py")  # the record, and the storage adapter

# Optuna's ways in: a trial's or study's attributes (FrozenTrial, Trial, Study), their writers, a storage's
# readers and writers of them, and create_trial's and enqueue_trial's arguments that set them.
OPTUNA_NAMES = frozenset({
    "user_attrs", "system_attrs", "set_user_attr", "set_system_attr",
    "get_trial_user_attrs", "get_trial_system_attrs", "set_trial_user_attr", "set_trial_system_attr",
    "get_study_user_attrs", "get_study_system_attrs", "set_study_user_attr", "set_study_system_attr",
})
# Stored names only the record reads: Optuna's retry chain and queued parameters, and hpsearch's own names that
# mean nothing else (those that are also common words, such as "epochs" or "config", are left to the first rule).
STORED_NAMES = frozenset({
    "retry_history", "failed_trial", K.FIXED_PARAMS, K.CONFIRM_CLAIMS, K.CURVE, K.PRUNER_ATTRS, K.WEIGHTS,
    K.WEIGHTS_NOT_KEPT, K.RESUMED_FROM_EPOCH, K.STUDY_SPLIT, K.STUDY_SPEC_PATH, K.STUDY_MADE_WITH,
    K.STUDY_STOP_RULES,
})


def doors_broken(source: str) -> list[str]:
    """Each place in `source` that reaches Optuna's attributes past the record, as 'line N: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in OPTUNA_NAMES:
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.keyword) and node.arg in OPTUNA_NAMES:
            found.append((node.value.lineno, f"{node.arg}="))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in OPTUNA_NAMES | STORED_NAMES or node.value.startswith(K.CONFIRMED):
                found.append((node.lineno, repr(node.value)))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if not path.relative_to(PACKAGE).as_posix().startswith(DOORS))


@pytest.mark.parametrize("path", _modules(), ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_no_module_reaches_stored_attributes_past_the_record(path):
    assert doors_broken(path.read_text()) == [], \
        f"{path.relative_to(PACKAGE)} reaches Optuna's attributes: read and write them through hpsearch.record"


def test_every_way_past_the_record_is_caught():
    """The check above can fail: each way a module could reach the attributes is found."""
    source = '''
trial.user_attrs.get("val_accuracy")
study.set_user_attr("limits", {})
storage.set_trial_system_attr(trial_id, "x", 1)
getattr(trial, "system_attrs")
study.enqueue_trial({"lr": 0.1}, user_attrs={"baseline": "b"})
history = attrs.get("retry_history")
study.user_attrs[f"confirm #{number}"]
'''
    assert doors_broken(source) == [
        "line 2: .user_attrs", "line 3: .set_user_attr", "line 4: .set_trial_system_attr", "line 5: 'system_attrs'",
        "line 6: user_attrs=", "line 7: 'retry_history'", "line 8: 'confirm #'", "line 8: .user_attrs"]
    assert doors_broken('"""A docstring may say user_attrs."""\n# and a comment trial.user_attrs\n') == []


def test_the_package_is_walked():
    walked = {path.relative_to(PACKAGE).as_posix() for path in _modules()}
    assert {"cli.py", "api.py", "search/objective.py", "search/studystore.py", "search/confirm.py",
            "search/tracking.py", "results/report.py", "results/trials.py"} <= walked
    assert not any(name.startswith(("record/", "storage")) for name in walked)
