"""A study file that names the user's own model or data builder, or a plugin's family: its model.NAME parameters
typed and checked, dataset options checked, each problem one line naming the key; nothing of the user's imported."""

from __future__ import annotations

import sys

import pytest

from hpsearch.errors import SpecError
from hpsearch.studyfile import params as P
from hpsearch.studyfile.schema import load_spec

OWN_FAMILY = {"family": "lab_models.nets:build"}


def problems(write_study, **overrides) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(**overrides))
    return caught.value.problems


def test_an_own_builder_s_parameters_are_typed_by_what_the_file_gives_and_nothing_is_imported(write_study):
    spec = load_spec(write_study(
        space={"model.width": {"int": [4, 64], "log": True}, "model.drop": {"float": [0.0, 0.5]},
               "model.act": {"choice": ["relu", "gelu"]}, "model.sizes": {"choice": [[8, 16], [16, 32]]}},
        fixed={**OWN_FAMILY, "model.depth": 2, "model.bias": False}))
    assert spec.space["model.width"].kind == "int" and spec.space["model.width"].log
    assert spec.space["model.drop"].kind == "float" and spec.space["model.sizes"].choices == ((8, 16), (16, 32))
    assert spec.fixed["model.depth"] == 2 and "lab_models" not in sys.modules
    complete = P.complete({**OWN_FAMILY, "model.depth": 2})
    assert complete["model.depth"] == 2 and "width" not in complete and "blocks" not in complete


@pytest.mark.parametrize("overrides, says", [
    ({"fixed": {"model.width": 8}},
     "fixed.model.width: a model builder's parameter, and this study's family (cnn) is hpsearch's own: model.NAME is "
     "for family: package.module:function or a plugin's family"),
    ({"fixed": {**OWN_FAMILY, "model.2x": 8}}, 'fixed.model.2x: "2x" is not a name a builder can take'),
    ({"fixed": {**OWN_FAMILY, "model.width": {"deep": 1}}},
     "fixed.model.width: {\"deep\": 1} must be a number, a string, true/false or a list of them"),
    ({"fixed": {"family": "mylab/nets:build"}}, "fixed.family: \"mylab/nets:build\" must be one of cnn"),
    ({"fixed": {**OWN_FAMILY, "wdth": 8}}, "fixed.wdth: unknown parameter (allowed: family"),
    ({"space": {"model.width": {"int": [8, 4]}}, "fixed": OWN_FAMILY}, "space.model.width"),
    ({"dataset": {"name": "digits", "options": {"limit": 5}}}, "dataset.options: only for a dataset read by a data "
                                                               "builder"),
    ({"dataset": {"name": "lab_models.data:digits", "options": {"limit": float("nan")}}},
     "dataset.options: must be a mapping of names to numbers, strings"),
    ({"dataset": {"name": "lab_models.data:digits", "path": "cells"}},
     "dataset.path: only for dataset imagefolder: a data builder returns its folder's path itself"),
    ({"dataset": {"name": "lab_models.data"}}, "dataset.name: unknown dataset \"lab_models.data\" (allowed: digits"),
])
def test_a_builder_s_study_file_problem_is_one_line_naming_its_key(write_study, overrides, says):
    found = problems(write_study, **overrides)
    assert any(line.startswith(says) for line in found), found


def test_a_plugin_family_s_declared_parameters_are_checked_with_their_bounds_and_defaults(write_study, lab_plugin):
    assert problems(write_study, fixed={"family": "labnet", "model.units": 0, "model.depth": 2}) == [
        "fixed.model.units: 0 must be in [1, 1024]",
        "fixed.model.depth: unknown parameter of this study's model builder (labnet takes units, layers)"]
    assert P.complete({"family": "labnet"})["model.units"] == 32


def test_a_data_builder_s_options_and_image_size_are_recorded_with_the_split(write_study):
    spec = load_spec(write_study(dataset={"name": "lab_models.data:folder", "options": {"path": "cells"},
                                          "image_size": 16}))
    assert spec.dataset.recorded() == {"name": "lab_models.data:folder", "validation": 0.1, "test": 0.2,
                                       "split_seed": 0, "options": {"path": "cells"}, "image_size": [16, 16],
                                       "resize": "squash"}
