"""The imagefolder dataset: layouts, resizing, the decode cache, skipped files, and its study-file keys."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpsearch.errors import DatasetError, HpsearchError, SpecError
from hpsearch.search import preflight
from hpsearch.search.run import RunOptions, run
from hpsearch.search.studystore import load_existing
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import RESIZE_POLICIES, DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training import imagefolder

CPU = torch.device("cpu")


def folder_spec(path: str = "pets", **options) -> DatasetSpec:
    return DatasetSpec("imagefolder", path=path, image_size=options.pop("image_size", (8, 8)), **options)


def test_a_plain_tree_is_resized_carved_and_its_corrupt_file_skipped_with_one_warning(image_folder, isolated, caplog):
    image_folder(isolated / "data" / "pets", ("cat", "dog", "frog"), per_class=8)
    (isolated / "data" / "pets" / "dog" / "broken.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING, logger="hpsearch.training"):
        d = data.load(folder_spec(validation=3, test=6), CPU)
    assert d.classes == ("cat", "dog", "frog") and d.shape == (3, 8, 8) and d.train_x.dtype == torch.uint8
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (15, 3, 6)
    assert torch.bincount(d.test_y).tolist() == [2, 2, 2]  # stratified
    (warning,) = caplog.records
    assert "skipped 1 unreadable image of 25" in warning.getMessage() and "dog/broken.png" in warning.getMessage()
    assert "pets (image folder, 8x8 squash)" in d.source


def test_split_folders_are_used_as_given_and_a_missing_test_split_is_carved(image_folder, isolated):
    root = isolated / "data" / "pets"
    image_folder(root / "train", per_class=6)
    image_folder(root / "val", per_class=2, seed=1)
    d = data.load(folder_spec(test=4), CPU)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (8, 4, 4)
    again = imagefolder.read_image_folder(root / "val", (8, 8))[0]
    assert torch.equal(d.val_x, again)  # validation is val/, untouched


def test_resize_policies_squash_crop_or_letterbox():
    wide = Image.new("RGB", (16, 8), (255, 255, 255))
    squash, crop, pad = (np.array(imagefolder._resized(wide, (8, 8), policy)) for policy in RESIZE_POLICIES)
    assert squash.shape == crop.shape == pad.shape == (8, 8, 3)
    assert squash.min() == crop.min() == 255  # both fill the square
    assert pad[0].max() == 0 and pad[-1].max() == 0 and pad[4].min() == 255  # black bars above and below


def test_decoded_images_are_cached_beside_the_data_and_reused(image_folder, isolated, monkeypatch):
    root = image_folder(isolated / "pets", per_class=3)
    x, y, classes = imagefolder.read_image_folder(root, (8, 8), "crop")
    (cache,) = isolated.glob(".hpsearch-pets-8x8-crop-*.safetensors")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagefolder.Image, "open", no_decoding)
    x2, y2, classes2 = imagefolder.read_image_folder(root, (8, 8), "crop")
    assert torch.equal(x, x2) and torch.equal(y, y2) and classes == classes2
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another cache
        imagefolder.read_image_folder(root, (8, 8), "pad")


@pytest.mark.parametrize("layout, message", [
    ({}, "no folder"),
    ({"test/cat": 2, "test/dog": 2}, "has test/ but no train/"),
    ({"train/cat": 2, "train/dog": 2, "validation/cat": 2, "validation/bird": 2}, "holds other class folders"),
    ({"only": 4}, "one class folder only"),
])
def test_layout_problems_say_what_to_fix(image_folder, isolated, layout, message):
    for folder, count in layout.items():
        parent, _, name = f"pets/{folder}".rpartition("/")
        image_folder(isolated / "data" / parent, (name,), per_class=count)
    with pytest.raises(DatasetError, match=message):
        data.load(folder_spec(), CPU)


@pytest.mark.parametrize("dataset, key, message", [
    ({"name": "imagefolder", "image_size": 32}, "dataset.path", "must be the image folder"),
    ({"name": "imagefolder", "path": "pets"}, "dataset.image_size", "a side such as 96 or [height, width]"),
    ({"name": "imagefolder", "path": "pets", "image_size": [32, 0]}, "dataset.image_size", "1 to 4096"),
    ({"name": "imagefolder", "path": "pets", "image_size": 32, "resize": "stretch"}, "dataset.resize",
     "allowed: squash, crop, pad"),
    ({"name": "digits", "image_size": 32}, "dataset.image_size", "only for dataset imagefolder"),
])
def test_imagefolder_keys_are_validated(write_study, dataset, key, message):
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(dataset=dataset))
    assert any(p.startswith(f"{key}: ") and message in p for p in caught.value.problems), caught.value.problems


def test_baselines_are_checked_on_the_study_image_size_without_reading_data(write_study):
    spec = load_spec(write_study(dataset={"name": "imagefolder", "path": "absent", "image_size": [32, 48]},
                                 baselines=["seed000-catsdogs"]))
    assert spec.dataset.image_size == (32, 48)
    with pytest.raises(SpecError, match="seed000-catsdogs does not fit imagefolder: the 8x8 input shrinks"):
        preflight.check(load_spec(write_study(dataset={"name": "imagefolder", "path": "absent", "image_size": 8},
                                              baselines=["seed000-catsdogs"])))


def test_a_baseline_for_other_classes_fails_the_run_before_anything_is_written(write_study, storage, image_folder,
                                                                               isolated):
    image_folder(isolated / "data" / "pets", ("cat", "dog", "frog"), per_class=4)
    spec = load_spec(write_study(dataset={"name": "imagefolder", "path": "pets", "image_size": 32, "test": 3, "validation": 3},
                                 baselines=["seed000-catsdogs"]))
    with pytest.raises(HpsearchError, match="seed000-catsdogs does not fit .* needs exactly 2 classes, the data has 3"):
        run(spec, storage, RunOptions(device="cpu"))
    assert not Path(storage.removeprefix("sqlite:///")).exists()
    with pytest.raises(HpsearchError, match="no storage"):
        load_existing("tiny-digits", storage)


def test_a_trial_of_an_image_folder_study_is_exported_and_trained_again_to_its_numbers(
        write_study, storage, image_folder, isolated):
    """The config carries the folder, its image size and resize policy: `train` (and `confirm`, which
    retrains through the same config) rebuilds the same images and split on its own."""
    import json

    import yaml
    from click.testing import CliRunner

    from hpsearch.cli import main

    image_folder(isolated / "data" / "pets", ("cat", "dog"), per_class=10)
    dataset = {"name": "imagefolder", "path": "pets", "image_size": [8, 12], "resize": "crop", "validation": 4,
               "test": 4}
    path = write_study(dataset=dataset, budget={"epochs": 2, "trials": 1},
                       space={"lr": {"float": [0.01, 0.1], "log": True}}, fixed={"blocks": 1, "batch_size": 4})
    trial = run(load_spec(path), storage, RunOptions(device="cpu")).trials[0]
    exported = CliRunner().invoke(main, ["export", "--study", "tiny-digits", "--storage", storage, "-o", "best.yaml"])
    assert exported.exit_code == 0, exported.output
    assert yaml.safe_load((isolated / "best.yaml").read_text())["dataset"] == {**dataset, "split_seed": 0}
    result = CliRunner().invoke(main, ["train", "--config", "best.yaml", "--out", "again", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    again = json.loads((isolated / "again" / "results.json").read_text())["seeds"][0]
    assert (again["val_accuracy"], again["test_accuracy"]) == (trial.value, trial.user_attrs["test_accuracy"])
