"""The user's builders called: a data builder's tensors or image folder made the three splits, each wrong return one
line saying how to give it; a model builder's model checked, and priced even where it needs real tensors to build."""

from __future__ import annotations

import pytest
import torch

from hpsearch.errors import DatasetError
from hpsearch.search.cost import multiply_adds
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata
from hpsearch.training.models import BuilderFailed, build_model
from hpsearch.training.space import model_config

CPU = torch.device("cpu")


def test_a_data_builder_s_tensors_are_split_as_hpsearch_s_own_datasets_are(lab_plugin, tmp_path):
    spec = DatasetSpec("lab_models.data:digits_tensors", validation=0.2, test=0.25, options={"limit": 400})
    data = devicedata.load(spec, CPU, tmp_path)
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (240, 60, 100)  # test carved, then validation
    assert data.classes[0] == "digit 0" and data.train_x.shape[1:] == (1, 8, 8)
    own_test = devicedata.load(DatasetSpec("lab_models.data:digits", validation=0.2, options={"limit": 400}), CPU,
                               tmp_path)
    assert len(own_test.test_x) == 80  # the builder's own test split: its last fifth


def test_a_data_builder_may_give_an_image_folder_read_at_the_study_s_size(lab_plugin, tmp_path, image_folder):
    image_folder(tmp_path / "cells", classes=("healthy", "infected"), per_class=10)
    spec = DatasetSpec("lab_models.data:folder", validation=0.2, test=0.2, options={"path": "cells"},
                       image_size=(12, 12))
    data = devicedata.load(spec, CPU, tmp_path)
    assert data.classes == ("healthy", "infected") and data.train_x.shape[1:] == (3, 12, 12)
    with pytest.raises(DatasetError, match="give dataset.image_size"):
        devicedata.load(DatasetSpec("lab_models.data:folder", options={"path": "cells"}), CPU, tmp_path)


@pytest.mark.parametrize("builder, says", [
    ("floats", "data builder lab_models.data:floats: train_x is float32: give uint8 images, 0 to 255"),
    ("channels_last", "data builder lab_models.data:channels_last: train_x has shape 100 x 8 x 8 x 3, channels "
                      "last: give N x C x H x W (x.permute(0, 3, 1, 2))"),
    ("one_value", "data builder lab_models.data:one_value returned a dict: return (train_x, train_y, test_x, test_y)"),
    ("raises", "data builder lab_models.data:raises raised FileNotFoundError: no file "),
])
def test_a_data_builder_s_wrong_return_is_one_line_saying_how_to_give_it(lab_plugin, tmp_path, builder, says):
    with pytest.raises(DatasetError) as raised:
        devicedata.load(DatasetSpec(f"lab_models.data:{builder}"), CPU, tmp_path)
    assert str(raised.value).startswith(says) and "\n" not in str(raised.value)


def test_a_model_builder_gets_its_parameters_without_the_prefix_and_its_model_is_checked(lab_plugin):
    params = {"family": "lab_models.nets:build", "model.width": 6, "model.act": "gelu"}
    model = build_model(model_config(params, (1, 8, 8), 10))
    assert model[0].out_channels == 6 and isinstance(model[2], torch.nn.GELU)
    with pytest.raises(BuilderFailed, match=r"^the model of lab_models.nets:wrong_logits gives \(1, 11\) for one "
                                            r"1x8x8 image, not \(1, 10\): it must return one logit per class$"):
        build_model(model_config({"family": "lab_models.nets:wrong_logits"}, (1, 8, 8), 10))
    with pytest.raises(BuilderFailed, match="^model builder lab_models.nets:raises raised ValueError: depth None"):
        build_model(model_config({"family": "lab_models.nets:raises"}, (1, 8, 8), 10))


def test_a_model_that_reads_its_tensors_as_it_builds_is_priced_on_the_cpu(lab_plugin):
    reads = multiply_adds({"family": "lab_models.nets:reads_values"}, (1, 8, 8), 10)
    same = multiply_adds({"family": "lab_models.nets:build", "model.width": 4}, (1, 8, 8), 10)
    assert reads == same > 0
