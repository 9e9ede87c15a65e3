"""torch files read without running code: a damaged, pickled or foreign file is named in one line, never a traceback
(the decoded-image cache, a safetensors file, has tests of its own: test_imagefolder_cache.py)."""

from __future__ import annotations

import datetime
import pickle

import pytest
import torch
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.training import torchfile, transfer
from hpsearch.training.models import build_model
from hpsearch.training.space import model_config
from tests.helpers import WritesAFile


@pytest.mark.parametrize("content, reason", [
    (b"", "truncated or damaged"),
    (b"hello world\n", "not a file torch wrote"),
    (pickle.dumps(datetime.date(2026, 12, 7)), "not plain tensors, or damaged"),  # another program's pickle
])
def test_a_file_torch_cannot_load_safely_says_why(content, reason, tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(torchfile.UnreadableFile) as raised:
        torchfile.load(path)
    assert raised.value.reason.startswith(reason) and str(raised.value).startswith(f"{path}: ")


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "written-by-unpickling"
    torch.save({"state_dict": WritesAFile(marker)}, tmp_path / "x.pt")
    with pytest.raises(torchfile.UnreadableFile, match=r"not plain tensors, or damaged \(Unsupported global: GLOBAL "
                                                       r"io.open was not an allowed global by default\)"):
        torchfile.load(tmp_path / "x.pt")
    assert not marker.exists()


def test_a_truncated_torch_file_is_truncated(tmp_path):
    torch.save({"x": torch.ones(100)}, tmp_path / "x.pt")
    (tmp_path / "x.pt").write_bytes((tmp_path / "x.pt").read_bytes()[:200])
    with pytest.raises(torchfile.UnreadableFile, match="truncated or damaged"):
        torchfile.load(tmp_path / "x.pt")


def test_init_weights_of_a_damaged_or_foreign_pt_file_is_one_line(tmp_path, write_study):
    marker = tmp_path / "written-by-unpickling"
    torch.save({"state_dict": WritesAFile(marker)}, tmp_path / "pickled.pt")
    model = build_model(model_config({"blocks": 1, "convs_per_block": 1, "width": 4}, (1, 8, 8), 10))
    transfer.save_checkpoint(tmp_path / "foreign.pt", model, {"family": "nope", "width": "wide"}, (1, 8, 8))
    expected = {"pickled.pt": [f"error: init.weights: {tmp_path / 'pickled.pt'} is not a weights file torch can load "
                               "safely (not plain tensors, or damaged (Unsupported global: GLOBAL io.open was not an "
                               "allowed global by default))"],
                "foreign.pt": [f"error: init.weights: {tmp_path / 'foreign.pt'}: config: params.family: 'nope' must be "
                               "one of cnn, resnet9, resnet18, squeezenet1_1, or your own builder's import path, "
                               "package.module:function",
                               f"error: init.weights: {tmp_path / 'foreign.pt'}: config: params.width: 'wide' must be "
                               "an integer"]}
    for name, lines in expected.items():
        study = write_study(init={"weights": str(tmp_path / name)}, space={}, fixed={},
                            budget={"epochs": 1, "trials": 1})
        result = CliRunner().invoke(main, ["run", "--study", str(study), "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert result.stderr.strip().splitlines() == lines
    assert not marker.exists()
