"""A trial's record survives its three written forms: stored trial, exported config, weights header."""

from __future__ import annotations

import pytest
import torch
import yaml

from hpsearch.results.artifacts import read_header, save_state_dict
from hpsearch.studyfile import params as P
from hpsearch.record import Init, TrialRecord

DIGITS = {"name": "digits", "validation": 0.15, "test": 0.2, "split_seed": 0}
RECORDS = [
    TrialRecord(P.complete({"width": 6, "head_widths": [16]}), DIGITS, 2, 0),
    TrialRecord(P.complete({"pretrained": True, "freeze_convs": 1}), DIGITS, 3, 7,
                Init(study="src", trial=4, storage="sqlite:///a.db"), (1, 8, 8), 10),
    TrialRecord(P.complete({"pretrained": True, "reinit_convs": 1}), {**DIGITS, "name": "imagefolder",
                "path": "pets", "image_size": [16, 16], "resize": "squash"}, 1, 2**32 - 1,
                Init(weights="/w/src.safetensors", sha256="ab" * 32), (3, 16, 16), 2),
]


@pytest.mark.parametrize("record", RECORDS)
def test_the_stored_trial_gives_the_record_back(record):
    assert TrialRecord.from_attrs(record.trial_attrs(), record.study_attrs()) == record


@pytest.mark.parametrize("record", RECORDS)
def test_the_exported_config_gives_the_record_back(record):
    assert TrialRecord.from_config(yaml.safe_load(yaml.safe_dump(record.config()))) == record


@pytest.mark.parametrize("record", RECORDS)
def test_a_weights_files_header_gives_the_record_back(record, tmp_path):
    path = tmp_path / "w.safetensors"
    save_state_dict(torch.nn.Linear(2, 2), path, record.header())
    assert TrialRecord.from_header(read_header(path)) == record


def test_what_older_hpsearch_wrote_still_reads():
    """A config from before init, input_shape and classes; a transfer trial stored before its `source`
    attribute (its `init` words name the study's own storage's trial); a header with no record."""
    old = {"dataset": DIGITS, "epochs": 2, "seed": 0, "params": {"width": 6}}
    assert TrialRecord.from_config(old) == TrialRecord({"width": 6}, DIGITS, 2, 0)
    attrs = {"config": {"pretrained": True}, "epochs": 2, "init": "study src trial #1", "input_shape": [1, 8, 8]}
    study = {"dataset_split": DIGITS, "seed": 0}
    assert TrialRecord.from_attrs(attrs, study, storage="sqlite:///x.db").init == Init("src", 1, "sqlite:///x.db")
    assert TrialRecord.from_attrs({**attrs, "init": "/w/a.pt"}, study).init == Init(weights="/w/a.pt")
    assert TrialRecord.from_header({"params": "{}"}) is None


def test_a_record_never_holds_a_password():
    """Every written form of a record is masked, a password read from an earlier version's record too."""
    url = "postgresql://bob:s3cret@db:5432/hpsearch?sslpassword=k3y"
    init = Init.from_dict({"study": "src", "storage": url})
    record = TrialRecord(P.complete({"pretrained": True}), DIGITS, 2, 0, init)
    assert record.init.storage == "postgresql://bob:***@db:5432/hpsearch?sslpassword=***"
    for form in (record.trial_attrs(), record.config(), record.header()):
        assert "s3cret" not in str(form) and "k3y" not in str(form)
