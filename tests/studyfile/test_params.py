"""The table of every parameter: its choices, defaults, bounds, and when it matters."""

from __future__ import annotations

from hpsearch.studyfile import params as P


def test_augment_choices_cover_every_combination():
    choices = P.BY_NAME["augment"].choices
    assert choices[0] == "none" and len(choices) == 8
    assert {"flip", "crop", "cutout", "flip_crop", "flip_crop_cutout"} <= set(choices)


def test_complete_fills_the_defaults_of_the_parameters_that_matter_and_leaves_out_those_that_do_not():
    assert P.complete({})["optimizer"] == P.BY_NAME["optimizer"].default
    assert not {"width", "batchnorm"} & P.complete({"blocks": 0}).keys()  # no conv layers: nothing to size
    assert "momentum" not in P.complete({"optimizer": "adamw"})
    assert "warmup_fraction" not in P.complete({}) and "warmup_fraction" in P.complete({"schedule": "warmup_linear"})


def test_a_value_out_of_bounds_or_of_the_wrong_type_says_what_is_allowed():
    assert P.BY_NAME["lr"].check_value(-1) == "must be in [1e-07, 100]"
    assert P.BY_NAME["blocks"].check_value(1.5) == "must be an integer"
    assert P.BY_NAME["lr"].check_value(0.1) is None
