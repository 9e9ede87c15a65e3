"""Image folders: decoded and resized once (threads), then cached as one tensor file beside the data."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps

from hpsearch import escape
from hpsearch.errors import DatasetError
from hpsearch.training import torchfile

if TYPE_CHECKING:
    pass

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
    decoding and a changed one is decoded again. Unreadable images are skipped and counted in
    one warning.
    """
    classes, files, stats, unreadable = _listing(root)
    key = "".join(f"{name}:{st.st_size}:{st.st_mtime_ns}\n" for name, st in stats)
    if image_size is not None:
        key += f"resize:{image_size[0]}x{image_size[1]}:{resize}\n"
    size_tag = "" if image_size is None else f"{image_size[0]}x{image_size[1]}-{resize}-"
    cache = _cache_path(root, size_tag + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16])
    if (cached := _read_cache(cache)) is not None:
        x, y, skipped = cached
    else:
        started = time.perf_counter()
        x, y, skipped = _decode(root, files, image_size, resize, progress)
        log.info("%s: decoded %d images in %.1f s", shown_name(root), len(y), time.perf_counter() - started)
        _write_cache(cache, {"x": x, "y": y, "classes": list(classes), "skipped": skipped})
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
    """Decode (and resize) every file into one preallocated uint8 tensor; unreadable ones are listed."""

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
        raise DatasetError(f"{shown_name(root)}: none of its {len(files)} images can be read ({skipped[0]})")
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


def _read_cache(cache: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The images, labels and skipped files _write_cache wrote, or None: no cache yet, or one that is damaged or
    not ours (a warning names it), which decoding again replaces."""
    if not cache.is_file():
        return None
    try:
        cached = torchfile.load(cache)
    except torchfile.UnreadableFile as exc:
        cached = exc.reason
    if not (isinstance(cached, dict) and isinstance(cached.get("x"), torch.Tensor) and cached["x"].ndim == 4
            and isinstance(cached.get("y"), torch.Tensor) and cached["y"].shape == cached["x"].shape[:1]):
        reason = cached if isinstance(cached, str) else "not images and labels"
        log.warning("the decoded-image cache %s is unusable (%s): decoding the images again", cache, reason)
        return None
    return cached["x"], cached["y"], list(cached.get("skipped", []))


def _write_cache(cache: Path, payload: dict) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file, even with parallel workers."""
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    try:
        torch.save(payload, partial)
        os.replace(partial, cache)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        log.warning("could not write the decoded-image cache %s (%s); decoding again next time", cache, exc)


def _cache_path(root: Path, fingerprint: str) -> Path:
    if os.access(root.parent, os.W_OK):
        return root.parent / f".hpsearch-{root.name}-{fingerprint}.pt"
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hpsearch"
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir / f"{root.name}-{fingerprint}.pt"
