"""Readers, one per dataset: reader(spec, data_dir, progress=None) returns Images or raises
DatasetError naming the fix. A reader that decodes images calls progress(what, done, total) as it
goes; the caller decides how to show it (the CLI: a bar on a terminal, a line now and then in a log).

A dataset read by code outside hpsearch (a plugin's, or a study's own: studyfile/plugins.py) is read by
calling its function, load(options, data_dir), which returns the images as tensors, or an image folder's
path (read as dataset imagefolder reads one, through the same decoded-image cache); either way the images
are checked here and split as hpsearch's own datasets are (devicedata.py).
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
from hpsearch.errors import DatasetError, one_line
from hpsearch.studyfile import plugins
from hpsearch.training import usercode
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
    return _read_folder(root, spec, progress)


def _read_folder(root: Path, spec: DatasetSpec, progress: Progress) -> Images:
    """The image folder at `root`, each image resized to spec.image_size as spec.resize says."""
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


def _read_built(spec: DatasetSpec, data_dir: Path, progress: Progress = None) -> Images:
    """The images a data builder gives (studyfile/plugins.py finds it by the dataset's name): tensors, checked, or
    an image folder's path (relative to the data folder), read with dataset.image_size and resize."""
    path = plugins.dataset(spec.name).builder
    load = usercode.load_function(path, usercode.DATA_BUILDER).function
    try:
        given = load(dict(spec.options or {}), data_dir)
    except Exception as exc:  # noqa: BLE001 - the user's code: whatever it raises ends the run, in its words
        raise DatasetError(f"data builder {path} raised {one_line(exc)}") from None
    if isinstance(given, (str, os.PathLike)):
        root = data_dir / Path(given).expanduser()  # an absolute path stays itself
        if not root.is_dir():
            raise DatasetError(f"data builder {path} returned {root}, which is not a folder: return the image "
                               "folder's path (<class>/<image>, or train/, validation/ and test/ folders of those)")
        if spec.image_size is None:
            raise DatasetError(f"data builder {path} returned the image folder {root}: give dataset.image_size "
                               "(every image is resized to it) and, if you like, dataset.resize")
        return _read_folder(root, spec, progress)
    return built_images(path, given)


_GIVES = ("return (train_x, train_y, test_x, test_y), uint8 images N x C x H x W and integer labels (test_x and "
          "test_y None to carve a test split; class names fifth if you like), or an image folder's path")


def built_images(path: str, given: object) -> Images:
    """A data builder's tensors (or numpy arrays) checked and made Images; DatasetError says in one line what is
    wrong and how to give it instead."""
    if not isinstance(given, (tuple, list)) or len(given) not in (4, 5):
        what = f"{len(given)} values" if isinstance(given, (tuple, list)) else f"a {type(given).__name__}"
        raise DatasetError(f"data builder {path} returned {what}: {_GIVES}")
    train_x, train_y = _images(path, "train_x", given[0]), _labels(path, "train_y", given[1])
    if (given[2] is None) != (given[3] is None):
        raise DatasetError(f"data builder {path}: give test_x and test_y both, or both None (a test split carved "
                           "from train, dataset.test)")
    test_x = None if given[2] is None else _images(path, "test_x", given[2])
    test_y = None if given[3] is None else _labels(path, "test_y", given[3])
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if x is not None and len(x) != len(y):
            raise DatasetError(f"data builder {path}: {split}_x holds {len(x)} images, {split}_y {len(y)} labels")
    if test_x is not None and test_x.shape[1:] != train_x.shape[1:]:
        raise DatasetError(f"data builder {path}: test images are {_shape(test_x.shape[1:])}, training images "
                           f"{_shape(train_x.shape[1:])}: give both one C x H x W")
    count = int(max(train_y.max(), -1 if test_y is None else test_y.max())) + 1
    names = tuple(str(c) for c in range(count))
    if len(given) == 5:
        if not isinstance(given[4], (tuple, list)) or len(given[4]) < count:
            raise DatasetError(f"data builder {path}: the fifth value must name every class, a list of at least "
                               f"{count} names (the labels run to {count - 1})")
        names = tuple(str(c) for c in given[4])
    if len(names) < 2:
        raise DatasetError(f"data builder {path}: one class only; a classifier needs two or more")
    return Images(train_x.contiguous(), train_y, test_x, test_y, names, f"data builder {path}")


def _images(path: str, name: str, value: object) -> torch.Tensor:
    x = _tensor(path, name, value)
    if x.dtype != torch.uint8:
        raise DatasetError(f"data builder {path}: {name} is {str(x.dtype).removeprefix('torch.')}: give uint8 images, "
                           "0 to 255 (from floats in [0, 1]: (x * 255).round().to(torch.uint8))")
    if x.dim() == 3:  # N x H x W: one channel
        x = x.unsqueeze(1)
    if x.dim() != 4 or 0 in x.shape:
        raise DatasetError(f"data builder {path}: {name} has shape {_shape(x.shape)}: give N x C x H x W images (or "
                           "N x H x W for one channel)")
    if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        raise DatasetError(f"data builder {path}: {name} has shape {_shape(x.shape)}, channels last: give N x C x H x "
                           "W (x.permute(0, 3, 1, 2))")
    return x


def _labels(path: str, name: str, value: object) -> torch.Tensor:
    y = _tensor(path, name, value)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise DatasetError(f"data builder {path}: {name} is {str(y.dtype).removeprefix('torch.')} of shape "
                           f"{_shape(y.shape)}: give one integer label per image, 0 to classes - 1")
    if len(y) and y.min() < 0:
        raise DatasetError(f"data builder {path}: {name} holds the label {int(y.min())}: labels run from 0")
    return y.long()


def _tensor(path: str, name: str, value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DatasetError(f"data builder {path}: {name} is a {type(value).__name__}: give a torch tensor or a numpy array")


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape))


# The reader of each dataset of studyfile.types.DATASETS, keyed the same: that table holds what a study
# file is checked against without torch, this one the code that reads the images.
READERS: dict[str, Callable[[DatasetSpec, Path], Images]] = {
    "digits": _read_digits,
    "fashion-mnist": _read_fashion_mnist,
    "cifar10": _cifar_reader("cifar10", "cifar-10-batches-py", "CIFAR10"),
    "cifar100": _cifar_reader("cifar100", "cifar-100-python", "CIFAR100"),
    "imagefolder": _read_imagefolder,
}


def reader(name: str) -> Callable[..., Images]:
    """The reader of dataset `name`: hpsearch's own, or the one that calls a data builder."""
    return READERS.get(name, _read_built)

