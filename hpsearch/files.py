"""Files hpsearch writes for the user appear whole or not at all: each is written under a temporary name beside
its place and renamed there (a rename within a folder is atomic), so a full disk, a kill or a refusal never
leaves half a config, an empty PNG or a truncated copy of weights. A failure is one line naming the file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from hpsearch.errors import HpsearchError


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` to `path` whole, or raise HpsearchError and leave `path` as it was."""
    data = content.encode() if isinstance(content, str) else content
    with _replacing(path) as temporary:
        temporary.write_bytes(data)


def copy_atomic(source: Path, path: Path) -> None:
    """Copy `source` to `path` whole, or raise HpsearchError and leave `path` as it was."""
    with _replacing(path) as temporary:
        shutil.copyfile(source, temporary)


def save_atomic(path: Path, save: Callable[[Path], None]) -> None:
    """save(temporary) writes the file (a plot, say); it then takes `path`'s place whole."""
    with _replacing(path) as temporary:
        save(temporary)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    temporary = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        os.close(fd)
        temporary = Path(name)
        yield temporary
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise HpsearchError(f"cannot write {path} ({exc.strerror or exc}): free space there or choose another "
                            "place") from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def make_folder(folder: Path, option: str) -> None:
    """Make an output folder and its parents; one that cannot be made (a file in its way, no permission) is one
    line naming the option."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HpsearchError(f"{option}: cannot make the folder {folder} ({exc.strerror}): choose another") from None


@contextlib.contextmanager
def output_folder(folder: Path, option: str, kept_if: Callable[[Path], bool] = lambda folder: False) -> Iterator[Path]:
    """Make `folder` (and its parents) for a command's output. If the command is refused (HpsearchError), a
    folder this call made is removed again with what it holds, unless kept_if(folder) says it already holds
    results worth keeping (seeds trained before a later one failed, say)."""
    existed = folder.exists()
    make_folder(folder, option)
    try:
        yield folder
    except HpsearchError:
        if not existed and not kept_if(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise
