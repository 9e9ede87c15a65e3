"""The decoded-image cache is checked against what it was made from at every read: a rewritten, damaged or
foreign file is named in one line and decoded again (never unpickled, never trusted); a cache that cannot be
written (a full disk) is one warning, leaves no partial file, and the run goes on with the decoded images."""

from __future__ import annotations

import logging
import pickle
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hpsearch.training import imagefolder
from tests.helpers import finish, hpsearch, invoke, load


def read(root: Path, caplog) -> tuple[tuple[torch.Tensor, torch.Tensor, tuple[str, ...]], list[str]]:
    """read_image_folder's result and the warnings it logged."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpsearch.training"):
        result = imagefolder.read_image_folder(root, (8, 8))
    return result, [r.getMessage() for r in caplog.records]


@pytest.fixture
def cached(image_folder, isolated, caplog):
    """(folder, its cache file, the images as decoded): the folder read once, so that its cache exists."""
    root = image_folder(isolated / "pets", per_class=4)
    decoded, warnings = read(root, caplog)
    (cache,) = isolated.glob(".hpsearch-pets-*.safetensors")
    assert warnings == []
    return root, cache, decoded


def assert_decoded_again(root, cache, decoded, caplog, problem: str) -> None:
    """One warning naming the cache and its problem; the images as decoded; the cache replaced, so that the next
    read is silent and decodes nothing."""
    again, warnings = read(root, caplog)
    assert len(warnings) == 1 and str(cache) in warnings[0] and problem in warnings[0], warnings
    assert warnings[0].endswith("decoding the images again")
    for got, want in zip(again, decoded):
        assert got == want if isinstance(want, tuple) else torch.equal(got, want)
    third, warnings = read(root, caplog)
    assert warnings == [] and torch.equal(third[1], decoded[1])


def test_a_rewritten_cache_is_noticed_and_decoded_again(cached, caplog):
    """Labels all 0 and blank images, the header kept: trusted, it trained a model that scored 1.0000."""
    root, cache, decoded = cached
    tensors = load_file(str(cache))
    with safe_open(cache, framework="pt") as opened:
        fields = opened.metadata()  # the original header's fields, checksum included
    save_file({"x": torch.zeros_like(tensors["x"]), "y": torch.zeros_like(tensors["y"])}, cache, metadata=fields)
    assert_decoded_again(root, cache, decoded, caplog, "does not match the images it was made from")


def test_one_flipped_byte_is_noticed(cached, caplog):
    root, cache, decoded = cached
    raw = bytearray(cache.read_bytes())
    raw[-1] ^= 0xFF  # the last label's last byte
    cache.write_bytes(bytes(raw))
    assert_decoded_again(root, cache, decoded, caplog, "does not match the images it was made from")


@pytest.mark.parametrize("damage, problem", [
    (lambda raw: raw[:len(raw) // 2], "cannot be read (incomplete metadata, file not fully covered)"),
    (lambda raw: b"", "cannot be read (header too small)"),
    (lambda raw: random.Random(0).randbytes(4096), "cannot be read ("),
])
def test_a_damaged_cache_is_one_line_and_decoded_again(cached, caplog, damage, problem):
    """A damaged cache was a traceback on every run until the hidden file was found and deleted."""
    root, cache, decoded = cached
    cache.write_bytes(damage(cache.read_bytes()))
    assert_decoded_again(root, cache, decoded, caplog, problem)


class _Planted:
    """A pickle that, if unpickled, leaves a file behind."""

    def __reduce__(self):
        return (Path.touch, (Path("unpickled"),))


def test_a_planted_pickle_is_never_unpickled(cached, caplog, isolated):
    root, cache, decoded = cached
    cache.write_bytes(pickle.dumps({"x": _Planted(), "y": _Planted()}))
    assert_decoded_again(root, cache, decoded, caplog, "cannot be read (")
    assert not (isolated / "unpickled").exists()


def test_a_cache_made_for_another_listing_is_not_served(cached, caplog):
    """A cache copied or renamed over another's name: its checksum covers the listing it was made from."""
    root, cache, decoded = cached
    (root / "cat" / "0.png").unlink()
    other, _ = read(root, caplog)  # 7 images, decoded and cached under the new listing's name
    (newer,) = set(cache.parent.glob(".hpsearch-pets-*.safetensors")) - {cache}
    shutil.copyfile(cache, newer)  # the old 8 images under the new listing's name
    again, warnings = read(root, caplog)
    assert len(warnings) == 1 and str(newer) in warnings[0] and "does not match" in warnings[0]
    assert torch.equal(again[0], other[0]) and len(again[1]) == 7


def test_a_missing_header_field_is_one_line(cached, caplog):
    root, cache, decoded = cached
    save_file(load_file(str(cache)), cache)  # the tensors, no header fields
    assert_decoded_again(root, cache, decoded, caplog, "cannot be read (no skipped in its header)")


def test_images_read_from_the_cache_are_a_copy_not_the_file(cached, caplog):
    """Checked, then changed in place by another program: what was checked stays what trains."""
    root, cache, decoded = cached
    (x, y, _), warnings = read(root, caplog)
    assert warnings == []
    start = 8 + int.from_bytes(cache.read_bytes()[:8], "little")  # the tensors' bytes follow the header
    with open(cache, "r+b") as file:  # zeroed in place: the pages a mapping of the file shows
        file.seek(start)
        file.write(bytes(cache.stat().st_size - start))
    assert torch.equal(x, decoded[0]) and torch.equal(y, decoded[1])


@pytest.fixture
def small_disk(tmp_path):
    """A real 200 KiB tmpfs mounted at tmp_path/disk (root only), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}): needs root")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)  # lazy: a file left open by a failure


def test_a_cache_that_does_not_fit_the_disk_is_one_warning_and_no_partial_file(image_folder, small_disk, caplog):
    """12 images of 128x128 (590 KB decoded) on a 200 KiB disk their PNGs fit on: the run goes on from memory."""
    root = image_folder(small_disk / "pets", per_class=6)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpsearch.training"):
        x, y, classes = imagefolder.read_image_folder(root, (128, 128))
    assert x.shape == (12, 3, 128, 128) and y.tolist() == [0] * 6 + [1] * 6 and classes == ("cat", "dog")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("could not write the decoded-image cache ") and str(small_disk) in warning
    assert "(No space left on device" in warning and warning.endswith("decoding again next time")
    assert sorted(p.name for p in small_disk.iterdir()) == ["pets"]  # no cache, no .partial


def test_a_run_on_a_damaged_cache_says_one_line_and_trains(write_study, storage, image_folder, isolated):
    """A real process (pytest's log capture would hide the line): the line on stderr, no traceback, the run
    trains on the real images, and the cache is whole again."""
    image_folder(isolated / "data" / "pets", per_class=6)
    path = write_study(dataset={"name": "imagefolder", "path": "pets", "image_size": 8, "validation": 2, "test": 2},
                       budget={"epochs": 1, "trials": 1}, space={"lr": {"float": [0.01, 0.1]}},
                       fixed={"blocks": 1, "batch_size": 4})
    assert invoke("run", "--study", str(path), "--storage", storage, "--device", "cpu").exit_code == 0
    (cache,) = (isolated / "data").glob(".hpsearch-pets-*.safetensors")
    whole = {name: tensor.clone() for name, tensor in load_file(str(cache)).items()}  # not the file's mapping
    cache.write_bytes(cache.read_bytes()[:100])
    code, _, err = finish(hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu"))
    assert code == 0 and "Traceback" not in err, err
    said = [line for line in err.splitlines() if "decoded-image cache" in line]
    assert said == [f"the decoded-image cache {cache} cannot be read (invalid header length): decoding the images "
                    "again"]
    again = load_file(str(cache))
    assert torch.equal(again["x"], whole["x"]) and torch.equal(again["y"], whole["y"])
    assert len(load(storage).trials) == 2
