"""Image folders: decoded and resized once (threads), then cached as one tensor file beside the data."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hpsearch import escape, stopping
from hpsearch.errors import DatasetError
from hpsearch.files import CannotWrite, save_atomic
from hpsearch.words import plural

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None] | None  # progress(what, done, total), e.g. ("decoding train/", 640, 50000)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


# --------------------------------------------------------------------------------------------
# Image folders: decoded and resized once (threads), then cached as one tensor file beside the data.


def read_image_folder(root: Path, image_size: tuple[int, int] | None = None, resize: str = "squash", *,
                      progress: Progress = None) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """A <class>/<image> tree -> uint8 (N, 3, H, W), labels, class names.

    Without image_size every image must already have one size; with it, each is resized to
    (H, W) by `resize` (studyfile.types.RESIZE_POLICIES). The result is cached beside the folder under a key made
    of every file's name, size and mtime and of the resize, so an unchanged folder loads without
    decoding and a changed one is decoded again; a cache that does not match what it was made from is
    decoded again too (_read_cache). Unreadable images are skipped and counted in one warning.
    """
    classes, files, stats, unreadable = _listing(root)
    key = "".join(f"{name}:{st.st_size}:{st.st_mtime_ns}\n" for name, st in stats)
    if image_size is not None:
        key += f"resize:{image_size[0]}x{image_size[1]}:{resize}\n"
    source = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    size_tag = "" if image_size is None else f"{image_size[0]}x{image_size[1]}-{resize}-"
    cache = _cache_path(root, size_tag + source[:16])
    cached = _read_cache(cache, source, classes) if cache.is_file() else None
    if cached is not None:
        x, y, skipped = cached
    else:
        started = time.perf_counter()
        x, y, skipped = _decode(root, files, image_size, resize, progress)
        log.info("%s: decoded %d images in %.1f s", shown_name(root), len(y), time.perf_counter() - started)
        _write_cache(cache, x, y, source, classes, skipped)
    skipped = unreadable + list(skipped)
    if skipped:
        log.warning("%s: skipped %d unreadable image%s of %d (%s%s)", shown_name(root), len(skipped),
                    "s" if len(skipped) > 1 else "", len(files) + len(unreadable), skipped[0],
                    ", ..." if len(skipped) > 1 else "")
    return x, y, classes


def _listing(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]], list[tuple[str, os.stat_result]], list[str]]:
    """(classes, (file, label) pairs, (class/name, stat) of each, unreadable entries) of a <class>/<image> tree.

    A class is a folder (or a link to one) holding at least one image: a class folder without any is refused by
    name, since the model would get an output no image can teach. Entries that cannot be read (a dangling
    link, a link loop, an unreadable folder) are skipped and counted like corrupt images.
    """
    unreadable: list[str] = []
    found: dict[str, list[tuple[Path, os.stat_result]]] = {}
    for folder in _entries(root, unreadable, root):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        images = found.setdefault(folder.name, [])
        for path in _entries(folder, unreadable, root):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                st = path.stat()
            except OSError as exc:  # a dangling link, a link loop
                unreadable.append(f"{shown_name(path.relative_to(root))}: {exc.strerror}")
                continue
            if stat.S_ISREG(st.st_mode):
                images.append((path, st))
    if not found:
        raise DatasetError(f"{shown_name(root)}: no images found in <class>/ subfolders "
                           f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    if empty := [name for name, images in found.items() if not images]:
        raise DatasetError(f"{shown_name(root)}: class folder{'s' if len(empty) > 1 else ''} without images: "
                           f"{', '.join(shown_name(name) for name in empty[:5])}{', ...' if len(empty) > 5 else ''}; "
                           "add images or remove the folder (the model would get a class no image teaches)")
    classes = tuple(sorted(found))
    files = [(path, label) for label, name in enumerate(classes) for path, _ in found[name]]
    stats = [(f"{name}/{path.name}", st) for name in classes for path, st in found[name]]
    return classes, files, stats, unreadable


def _entries(folder: Path, unreadable: list[str], root: Path) -> list[Path]:
    """The folder's entries by name; an unreadable folder is noted as such and holds none."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        unreadable.append(f"{shown_name(folder.relative_to(root)) or '.'}/: {exc.strerror}")
        return []


def shown_name(name: str | Path) -> str:
    """A file name as messages show it: bytes that are not UTF-8 (kept by Python as surrogates) as \\x escapes,
    and control characters as on a terminal, so that a class folder named "cat\\nerror: x" forges no line."""
    return escape.terminal(os.fsencode(str(name)).decode("utf-8", "backslashreplace"))


def _decode(root: Path, files: list[tuple[Path, int]], image_size: tuple[int, int] | None, resize: str,
            progress: Progress) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode (and resize) every file into one preallocated uint8 tensor; unreadable ones are listed. A stop asked
    for (stopping.py) is raised between images."""

    def decode(path: Path) -> torch.Tensor | str:  # Pillow releases the GIL while decoding: threads help
        try:
            with Image.open(path) as image:
                if image_size is not None:  # JPEG: decode at the smallest DCT scale still >= the target
                    image.draft("RGB", (image_size[1], image_size[0]))
                image = image.convert("RGB")
                if image_size is not None:
                    image = _resized(image, image_size, resize)
                return torch.from_numpy(np.array(image)).permute(2, 0, 1)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # OSError: truncated or not an image
            return f"{shown_name(path.relative_to(root))}: {escape.terminal(str(exc))}"  # exc names the path too

    x, labels, skipped = None, [], []
    pool = ThreadPoolExecutor(max_workers=os.cpu_count())
    try:
        for done, ((path, label), image) in enumerate(zip(files, pool.map(decode, (f for f, _ in files))), start=1):
            stopping.check()
            if progress is not None:
                progress(f"decoding {root.name}/", done, len(files))
            if isinstance(image, str):
                skipped.append(image)
                continue
            if x is None:
                x = torch.empty((len(files), *image.shape), dtype=torch.uint8)
            if image.shape != x.shape[1:]:
                raise DatasetError(f"{shown_name(root)}: images differ in size ({tuple(x.shape[1:])} and "
                                   f"{tuple(image.shape)} at {shown_name(path.relative_to(root))}); give them one "
                                   "size (an imagefolder dataset resizes them to dataset.image_size)")
            x[len(labels)] = image
            labels.append(label)
    finally:
        pool.shutdown(cancel_futures=True)
    if x is None:
        raise DatasetError(f"{shown_name(root)}: none of its {plural(len(files), 'image')} can be read ({skipped[0]})")
    if len(labels) < len(files):
        x = x[:len(labels)].clone()  # a slice would save the whole preallocated storage
    return x, torch.tensor(labels), skipped


def _resized(image: Image.Image, size: tuple[int, int], policy: str) -> Image.Image:
    """`image` at (H, W) = size: squashed to it, centre-cropped to its aspect ratio, or letterboxed in black."""
    target = (size[1], size[0])  # Pillow sizes are (W, H)
    if policy == "crop":
        return ImageOps.fit(image, target, Image.Resampling.BICUBIC)
    if policy == "pad":
        return ImageOps.pad(image, target, Image.Resampling.BICUBIC, color=(0, 0, 0))
    return image.resize(target, Image.Resampling.BICUBIC)


# --------------------------------------------------------------------------------------------
# The cache: safetensors (nothing in it is unpickled), whose header holds a checksum of the tensors and
# of the listing they were decoded from, checked at every read.


def checksum(*tensors: torch.Tensor, text: str = "") -> str:
    """sha256 of `text` and of each tensor's dtype, shape and bytes, in order: what a cache is checked
    against, and (datasets.Images.fingerprint) what a study records of its data."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape"))
    for tensor in tensors:
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())  # any dtype, as bytes
    return digest.hexdigest()


def _cache_checksum(x: torch.Tensor, y: torch.Tensor, source: str, classes: tuple[str, ...], skipped: str) -> str:
    return checksum(x, y, text=json.dumps([source, list(classes), skipped]))


def _read_cache(cache: Path, source: str,
                classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The cached images, labels and skipped files, if the file is whole and was made from the listing
    `source` names; else None, after one line naming the file and why (it is then decoded again and
    replaced): a damaged or rewritten cache must not train the model, nor stop every run."""
    try:
        with safe_open(cache, framework="pt") as file:
            fields = file.metadata() or {}
            x, y = file.get_tensor("x").clone(), file.get_tensor("y").clone()  # copies: the file is mapped
        skipped = json.loads(fields["skipped"])
        whole = fields.get("checksum") == _cache_checksum(x, y, source, classes, fields["skipped"])
        problem = None if whole else "does not match the images it was made from"
    except (OSError, SafetensorError, KeyError, ValueError) as exc:  # KeyError, ValueError: its header
        problem = f"cannot be read ({_reason(exc)})"
    if problem is not None:
        log.warning("the decoded-image cache %s %s: decoding the images again", shown_name(cache), problem)
        return None
    return x, y, skipped


def _write_cache(cache: Path, x: torch.Tensor, y: torch.Tensor, source: str, classes: tuple[str, ...],
                 skipped: list[str]) -> None:
    """Written whole or not at all (files.py): a reader never sees half a file, even with parallel workers. A cache
    that cannot be written (a full disk, a read-only folder) is one warning, and the run goes on with the images
    it decoded."""
    fields = {"skipped": json.dumps(skipped)}
    fields["checksum"] = _cache_checksum(x, y, source, classes, fields["skipped"])
    try:
        save_atomic(cache, lambda temporary: save_file({"x": x, "y": y}, temporary, metadata=fields))
    except (CannotWrite, SafetensorError) as exc:  # safetensors' own I/O errors are SafetensorErrors
        log.warning("could not write the decoded-image cache %s (%s); decoding again next time", shown_name(cache),
                    _reason(exc))


def _reason(exc: Exception) -> str:
    """An error's words, without safetensors' prefixes ('Error while serializing: I/O error: ...')."""
    if isinstance(exc, CannotWrite):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]} in its header"
    return str(exc).rpartition(": ")[2] or type(exc).__name__


def _cache_path(root: Path, fingerprint: str) -> Path:
    if os.access(root.parent, os.W_OK):
        return root.parent / f".hpsearch-{root.name}-{fingerprint}.safetensors"
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hpsearch"
    with contextlib.suppress(OSError):  # then the cache is not written, with a warning (_write_cache)
        cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir / f"{root.name}-{fingerprint}.safetensors"
