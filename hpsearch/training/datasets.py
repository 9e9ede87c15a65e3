"""Readers, one per dataset: reader(spec, data_dir, progress=None) returns Images or raises
DatasetError naming the fix. A reader that decodes images calls progress(what, done, total) as it
goes; the caller decides how to show it (the CLI: a bar on a terminal, a line now and then in a log).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from hpsearch import stopping
from hpsearch.errors import DatasetError
from hpsearch.training.fetch import SOURCES
from hpsearch.training.imagefolder import Progress, checksum, read_image_folder, shown_name

if TYPE_CHECKING:
    from hpsearch.studyfile.types import DatasetSpec

log = logging.getLogger(__name__)

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


@dataclass(frozen=True)
class Images:
    """A dataset as read from disk, before splitting: uint8 (N, C, H, W) images, int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None  # None: the dataset has no official test split
    test_y: torch.Tensor | None
    classes: tuple[str, ...]
    source: str
    val_x: torch.Tensor | None = None  # None: carve the validation split from train
    val_y: torch.Tensor | None = None

    def fingerprint(self) -> str:
        """sha256 of the images and labels as read, split by split, and of the class names: a study records it
        (search/studystore.py) to tell other data under the same name from the same copy in another place."""
        splits = {"train": (self.train_x, self.train_y), "validation": (self.val_x, self.val_y),
                  "test": (self.test_x, self.test_y)}
        given = {name: pair for name, pair in splits.items() if pair[0] is not None}
        return checksum(*(t for pair in given.values() for t in pair),
                        text=json.dumps([list(self.classes), list(given)]))


# --------------------------------------------------------------------------------------------
# Readers, one per dataset: reader(spec, data_dir, progress=None) returns Images or raises
# DatasetError naming the fix. A reader that decodes images calls progress(what, done, total) as it
# goes; the caller decides how to show it (the CLI: a bar on a terminal, a line now and then in a log).


def _read_digits(spec: DatasetSpec, data_dir: Path, progress: Progress = None) -> Images:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 intensities -> 0..255, so every dataset shares one uint8 pipeline.
    x = torch.from_numpy(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    return Images(x, y, None, None, tuple(str(c) for c in digits.target_names), "scikit-learn load_digits")


def _read_fashion_mnist(spec: DatasetSpec, data_dir: Path, progress: Progress = None) -> Images:
    candidates = [data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist", data_dir, FASHION_MNIST_SYSTEM_DIR]
    folder = next((d for d in candidates if all(_idx_path(d, f) for f in FASHION_MNIST_FILES)), None)
    put = (f"put {', '.join(f + '.gz' for f in FASHION_MNIST_FILES)} in {data_dir / 'FashionMNIST' / 'raw'} "
           "(`hpsearch fetch fashion-mnist` downloads them, or `apt-get install dataset-fashion-mnist`)")
    if folder is None and _may_download(spec):
        _download("fashion-mnist", lambda: __import__("torchvision").datasets.FashionMNIST(str(data_dir), download=True),
                  data_dir, put)
        folder = data_dir / "FashionMNIST" / "raw"
    if folder is None:
        raise DatasetError(f"fashion-mnist not found: {put}, or run once online")
    train_x, train_y, test_x, test_y = (_read_idx(_idx_path(folder, f)) for f in FASHION_MNIST_FILES)
    return Images(train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long(),
                  FASHION_MNIST_CLASSES, str(folder))


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path) -> torch.Tensor:
    """The original MNIST idx format: a magic number whose last byte is the rank, then the dims."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an idx file of unsigned bytes: delete it and fetch it again")
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    return torch.from_numpy(data.reshape(dims).copy())


def _cifar_reader(name: str, torchvision_folder: str, dataset_class: str) -> Callable[[DatasetSpec, Path], Images]:
    """CIFAR-10/100: torchvision's pickled batches, or an image-folder copy (train/<class>/*)."""

    def read(spec: DatasetSpec, data_dir: Path, progress: Progress = None) -> Images:
        folder_copy = next((d for d in (data_dir / name, data_dir / f"{name}-jpeg", data_dir)
                            if (d / "train").is_dir() and (d / "test").is_dir()), None)
        if folder_copy is not None:
            train_x, train_y, classes = read_image_folder(folder_copy / "train", progress=progress)
            test_x, test_y, test_classes = read_image_folder(folder_copy / "test", progress=progress)
            if test_classes != classes:
                raise DatasetError(f"{folder_copy}: train/ and test/ hold different class folders")
            return Images(train_x, train_y, test_x, test_y, classes, f"{folder_copy} (image folder)")
        put = (f"put torchvision's {torchvision_folder}/ (from the official python tarball) in {data_dir}, or an "
               f"image folder with train/<class>/ and test/<class>/ in {data_dir / name} (--data-dir chooses the folder; "
               f"`hpsearch fetch {name}` downloads the official files)")
        if not (data_dir / torchvision_folder).is_dir():
            if not _may_download(spec):
                raise DatasetError(f"{name} not found: {put}, or run once online")
        cls = getattr(__import__("torchvision").datasets, dataset_class)
        train = _download(name, lambda: cls(str(data_dir), train=True, download=_may_download(spec)), data_dir, put)
        test = cls(str(data_dir), train=False, download=False)
        as_tensor = lambda ds: torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return Images(as_tensor(train), torch.tensor(train.targets), as_tensor(test), torch.tensor(test.targets),
                      tuple(train.classes), str(data_dir / torchvision_folder))

    return read


def _read_imagefolder(spec: DatasetSpec, data_dir: Path, progress: Progress = None) -> Images:
    """Any <class>/<image> tree, or one split into train/, validation/ (or val/) and test/ folders.

    Every image is resized to spec.image_size (spec.resize says how); a missing split is carved
    out of train (see _split_to_device).
    """
    root = Path(spec.path).expanduser()
    root = root if root.is_absolute() else data_dir / root
    if not root.is_dir():
        fetch = next((f"; `hpsearch fetch {s.name}` downloads it" for s in SOURCES.values() if s.folder == spec.path), "")
        raise DatasetError(f"imagefolder: no folder {root}: put the images there as <class>/<image> (or train/, "
                           "validation/ and test/ folders of those), or fix dataset.path (relative to the data "
                           f"folder, --data-dir){fetch}")
    folders = {split: next((root / n for n in names if (root / n).is_dir()), None)
               for split, names in SPLIT_FOLDERS.items()}
    if folders["train"] is None:
        if given := [f.name for f in folders.values() if f is not None]:
            raise DatasetError(f"{root}: has {given[0]}/ but no train/: add train/<class>/ folders, or put the "
                               "<class>/ folders directly in it and let hpsearch carve the splits")
        folders["train"] = root
    read = {split: read_image_folder(folder, spec.image_size, spec.resize, progress=progress)
            for split, folder in folders.items() if folder is not None}
    classes = read["train"][2]
    for split, (_, _, split_classes) in read.items():
        if split_classes != classes:
            raise DatasetError(f"{shown_name(folders[split])} holds other class folders than "
                               f"{shown_name(folders['train'])} ({', '.join(map(shown_name, split_classes[:3]))} ... "
                               f"against {', '.join(map(shown_name, classes[:3]))} ...)")
    if len(classes) < 2:
        raise DatasetError(f"{shown_name(folders['train'])}: one class folder only ({shown_name(classes[0])}); a "
                           "classifier needs two or more")
    (train_x, train_y, _), (val_x, val_y, _), (test_x, test_y, _) = (
        read.get(split, (None, None, None)) for split in SPLIT_FOLDERS)
    height, width = spec.image_size
    return Images(train_x, train_y, test_x, test_y, classes,
                  f"{root} (image folder, {height}x{width} {spec.resize})", val_x, val_y)


def _may_download(spec: DatasetSpec) -> bool:
    return spec.download and os.environ.get("HPSEARCH_OFFLINE", "") not in ("1", "true", "yes")


def _download(name: str, fetch, data_dir: Path, put: str):
    """fetch() (a torchvision download into data_dir); if it fails or is stopped (Ctrl-C or SIGTERM stop it at
    once: stopping.anywhere), remove what it left there (empty folders, partial archives); a failure says where to
    put the files by hand."""
    before = set(data_dir.iterdir()) if data_dir.is_dir() else None
    try:
        # torchvision prints as it downloads (stdout is for results), and has no safe point to stop at
        with redirect_stdout(sys.stderr), stopping.anywhere():
            return fetch()
    except BaseException as exc:
        if before is None:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for left in set(data_dir.iterdir()) - before:
                shutil.rmtree(left, ignore_errors=True) if left.is_dir() else left.unlink(missing_ok=True)
        if not isinstance(exc, (OSError, RuntimeError)):  # URLError is an OSError; torchvision raises RuntimeError
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]  # torchvision's: one line per mirror
        raise DatasetError(f"{name}: download failed ({reason}): {put}; HPSEARCH_OFFLINE=1 or dataset.download: "
                           "false skips the attempt") from None


# The reader of each dataset of studyfile.types.DATASETS, keyed the same: that table holds what a study
# file is checked against without torch, this one the code that reads the images.
READERS: dict[str, Callable[[DatasetSpec, Path], Images]] = {
    "digits": _read_digits,
    "fashion-mnist": _read_fashion_mnist,
    "cifar10": _cifar_reader("cifar10", "cifar-10-batches-py", "CIFAR10"),
    "cifar100": _cifar_reader("cifar100", "cifar-100-python", "CIFAR100"),
    "imagefolder": _read_imagefolder,
}

