"""Dataset readers: idx files in torchvision's layout, Debian's Fashion-MNIST, an image-folder copy of CIFAR-10, the offline and failed-download errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpsearch.errors import DatasetError
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import datasets, imagefolder
from hpsearch.training import devicedata as data

CPU = torch.device("cpu")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_files_in_torchvision_layout(tmp_path):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("t10k", 50)):
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    d = data.load(DatasetSpec("fashion-mnist", validation=20), CPU, tmp_path / "data")
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (180, 20, 50)
    assert d.shape == (1, 28, 28) and d.classes[0] == "T-shirt/top"
    assert str(raw) == d.source


@pytest.mark.skipif(not datasets.FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package_needs_no_option(tmp_path):
    d = data.load(DatasetSpec("fashion-mnist", validation=5000), CPU, tmp_path / "empty")
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (55_000, 5_000, 10_000)
    assert torch.bincount(d.test_y).tolist() == [1000] * 10


def make_image_folder(root: Path, classes=("cat", "dog", "frog"), per_class: int = 4, size: int = 8) -> None:
    gen = torch.Generator().manual_seed(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, generator=gen)
            Image.fromarray(image.numpy()).save(root / c / f"{i}.png")


def test_cifar10_reads_an_image_folder_copy_and_caches_it(tmp_path):
    root = tmp_path / "data" / "cifar10"
    make_image_folder(root / "train", per_class=10)
    make_image_folder(root / "test", per_class=2)
    d = data.load(DatasetSpec("cifar10", validation=6), CPU, tmp_path / "data")
    assert d.classes == ("cat", "dog", "frog") and d.shape == (3, 8, 8)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (24, 6, 6)
    first = torch.from_numpy(np.array(Image.open(root / "train" / "cat" / "0.png"))).permute(2, 0, 1)
    x, _, _ = imagefolder.read_image_folder(root / "train")
    assert torch.equal(x[0], first)  # pixels are exact (PNG), order is sorted by class then name
    caches = list(root.glob(".hpsearch-train-*.safetensors"))
    assert len(caches) == 1
    (root / "train" / "cat" / "0.png").unlink()  # a changed folder is decoded again, not served stale
    x2, _, _ = imagefolder.read_image_folder(root / "train")
    assert len(x2) == 29 and len(list(root.glob(".hpsearch-train-*.safetensors"))) == 2


@pytest.mark.parametrize("name, hint", [
    ("cifar10", "cifar-10-batches-py"),
    ("cifar100", "cifar-100-python"),
])
def test_missing_dataset_offline_says_where_to_put_which_files(tmp_path, name, hint):
    with pytest.raises(DatasetError, match=f"{name} not found: put torchvision's {hint}"):
        data.load(DatasetSpec(name), CPU, tmp_path / "nowhere")


def test_missing_fashion_mnist_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz.*FashionMNIST/raw"):
        data.load(DatasetSpec("fashion-mnist"), CPU, tmp_path / "nowhere")


@pytest.mark.parametrize("name, where", [("cifar10", "cifar-10-batches-py/"),
                                         ("fashion-mnist", "train-images-idx3-ubyte.gz")])
def test_a_failed_download_says_where_to_put_the_files_and_leaves_nothing(name, where, tmp_path, monkeypatch):
    """A real download attempt through a proxy that refuses every connection: what a machine offline meets."""
    if name == "fashion-mnist" and datasets.FASHION_MNIST_SYSTEM_DIR.is_dir():
        pytest.skip("Debian's copy of Fashion-MNIST is installed: nothing would be downloaded")
    monkeypatch.delenv("HPSEARCH_OFFLINE")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: connection refused at once
    data_dir = tmp_path / "fresh"
    with pytest.raises(DatasetError, match=f"{name}: download failed") as failed:
        data.load(DatasetSpec(name=name), CPU, data_dir)
    assert where in str(failed.value) and str(data_dir) in str(failed.value)
    assert not data_dir.exists()
