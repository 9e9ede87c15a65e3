"""Code outside hpsearch: a plugin's families and datasets found through entry points, a study's own builders
imported by path, each problem one line naming the builder, and the source hash a trial records."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from hpsearch.studyfile import plugins
from hpsearch.training import usercode
from hpsearch.studyfile import params as P
from tests.conftest import forget_user_code
from tests.helpers import invoke


def test_an_installed_plugin_s_family_and_dataset_are_found_by_name(lab_plugin):
    labnet = plugins.family("labnet")
    assert labnet.builder == "lab_models.nets:build_labnet" and [p.name for p in labnet.builder_params] == ["units",
                                                                                                           "layers"]
    assert plugins.dataset("lab-digits").builder == "lab_models.data:digits"
    assert list(plugins.all_families())[-1] == "labnet" and "lab-digits" in plugins.all_datasets()
    assert "lab_models.nets" not in sys.modules  # the table is read, the builder not imported


def test_without_the_plugin_its_names_are_unknown_and_a_study_s_import_path_is_its_own_family():
    assert plugins.family("labnet") is None and plugins.dataset("lab-digits") is None
    own = plugins.family("mylab.nets:build")
    assert own.builder == "mylab.nets:build" and own.builder_params is None
    assert plugins.dataset("mylab.data:load").builder == "mylab.data:load"
    for not_a_path in ("mylab.nets", "mylab/nets:build", "mylab.nets:", ":build", "my lab:build", 3):
        assert plugins.family(not_a_path) is None


def test_hpsearch_s_own_names_never_look_for_plugins(lab_plugin, monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda **_: pytest.fail("looked for plugins"))
    assert plugins.family("cnn").builder is None and plugins.dataset("digits").builder is None
    assert P.complete({"family": "resnet9"})["width"] == 64


def test_a_plugin_that_cannot_be_used_is_left_out_with_a_warning_naming_it(lab_plugin, caplog):
    broken = lab_plugin / "broken-0.1.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (broken / "entry_points.txt").write_text(
        "[hpsearch.families]\nmissing = lab_models.nowhere:NET\nwrong = lab_models.table:LAB_DIGITS\n"
        "cnn = lab_models.table:LABNET\nother = lab_models.table:LABNET\n")
    forget_user_code()
    with caplog.at_level(logging.WARNING, logger="hpsearch.plugins"):
        assert list(plugins.plugin_families()) == ["labnet"]
    said = "\n".join(caplog.messages)
    assert "plugin broken: hpsearch.families missing = lab_models.nowhere:NET cannot be loaded (ModuleNotFoundError" in said
    assert "wrong = lab_models.table:LAB_DIGITS is a Dataset, not a Family row: left out" in said
    assert "names itself 'labnet': the entry point's name must be its name" in said


@pytest.mark.parametrize("path, says", [
    ("nowhere_at_all.nets:build", "model builder nowhere_at_all.nets:build: cannot import nowhere_at_all.nets "
                                  "(ModuleNotFoundError: No module named 'nowhere_at_all'): install its package, run from the "
                                  "folder that holds it, or put that folder on PYTHONPATH"),
    ("lab_models.nets:missing", "model builder lab_models.nets:missing: lab_models.nets has no missing"),
    ("lab_models.nets:NOT_A_FUNCTION", "model builder lab_models.nets:NOT_A_FUNCTION: NOT_A_FUNCTION is a int, not a "
                                       "function"),
    ("lab_models.nets:two_arguments", "model builder lab_models.nets:two_arguments must take (params, input_shape, "
                                      "num_classes): it takes (params, input_shape)"),
])
def test_a_builder_that_cannot_be_used_is_one_line_naming_it_and_why(lab_plugin, path, says):
    with pytest.raises(usercode.UserCodeError) as raised:
        usercode.load_function(path, usercode.MODEL_BUILDER)
    assert str(raised.value) == says


def test_a_module_in_the_folder_the_command_runs_from_imports_though_the_script_leaves_it_off_the_path(
        tmp_path, monkeypatch):
    (tmp_path / "mynets_here.py").write_text("def build(params, input_shape, num_classes):\n    return params\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert usercode.load_function("mynets_here:build", usercode.MODEL_BUILDER).function({"a": 1}, (1,), 2) == {
            "a": 1}
        assert sys.path[-1] == str(tmp_path)
    finally:
        sys.modules.pop("mynets_here", None)
        usercode._loaded.cache_clear()


def test_a_missing_module_the_builder_imports_is_named_without_the_path_hint(lab_plugin):
    (lab_plugin / "lab_models" / "needs.py").write_text("import timm_not_here\n")
    with pytest.raises(usercode.UserCodeError) as raised:
        usercode.load_function("lab_models.needs:build", usercode.MODEL_BUILDER)
    assert str(raised.value) == ("model builder lab_models.needs:build: cannot import lab_models.needs "
                                 "(ModuleNotFoundError: No module named 'timm_not_here')")


def test_a_module_that_fails_as_it_imports_is_named_with_its_error(lab_plugin):
    (lab_plugin / "lab_models" / "typo.py").write_text("def build(params, input_shape, num_classes)\n    pass\n")
    with pytest.raises(usercode.UserCodeError, match=r"^data builder lab_models.typo:build: cannot import "
                                                    r"lab_models.typo \(SyntaxError: "):
        usercode.load_function("lab_models.typo:build", usercode.DATA_BUILDER)


def test_a_trial_records_its_builders_source_hash_and_a_change_is_one_line(lab_plugin):
    code = usercode.code_record("lab_models.nets:build", "lab-digits")
    assert code["model"]["builder"] == "lab_models.nets:build" and len(code["model"]["sha256"]) == 64
    assert code["data"]["builder"] == "lab_models.data:digits"
    assert usercode.code_record("cnn", "digits") == {}
    assert usercode.code_changes(code) == []

    nets = lab_plugin / "lab_models" / "nets.py"
    nets.write_text(nets.read_text() + "\n# tuned\n")
    assert usercode.code_changes(code) == []  # this process runs the code it imported
    forget_user_code()
    [note] = usercode.code_changes(code)
    assert note.startswith("the model builder lab_models.nets:build is not the code that trained the trial (its "
                           "module's source has sha256 ") and note.endswith(f"{code['model']['sha256'][:12]} then): "
                                                                           "expect other numbers")


def test_hpsearch_params_lists_a_plugin_s_family_and_dataset_without_importing_torch(lab_plugin):
    script = ("import sys; from click.testing import CliRunner; from hpsearch.cli import main; "
              "result = CliRunner().invoke(main, ['params']); print(result.output); "
              "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lab_plugin), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "family labnet (a plugin's): the lab's fully connected net; built by lab_models.nets:build_labnet" in out
    assert "model.units      Hidden units per layer.\n                 default 32; int in [1, 1024]" in out
    assert "dataset lab-digits (a plugin's): 1x8x8, 10 classes; read by lab_models.data:digits" in out
    assert "labnet, or package.module:function" in out
    assert out.rstrip().endswith("no torch")


def test_a_plugin_s_words_reach_the_terminal_escaped(lab_plugin):
    (lab_plugin / "lab_models" / "loud.py").write_text(
        "from hpsearch.studyfile.families import Family\n"
        "LOUD = Family('loud', 'clears your screen\\x1b[2J', builder='lab_models.nets:build', builder_params=())\n")
    loud = lab_plugin / "loud-0.1.dist-info"
    loud.mkdir()
    (loud / "METADATA").write_text("Metadata-Version: 2.1\nName: loud\nVersion: 0.1\n")
    (loud / "entry_points.txt").write_text("[hpsearch.families]\nloud = lab_models.loud:LOUD\n")
    forget_user_code()
    result = invoke("params")
    assert "family loud (a plugin's): clears your screen\\x1b[2J; built by" in result.output
    assert "\x1b" not in result.output


def test_without_plugins_hpsearch_params_lists_hpsearch_s_own_only():
    result = invoke("params")
    assert result.exit_code == 0 and "a plugin's" not in result.output
    assert "squeezenet1_1, or package.module:function" in result.output
