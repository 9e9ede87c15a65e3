"""Files hpsearch writes for the user appear whole or not at all: each is written under a temporary name beside
its place and renamed there (a rename within a folder is atomic), so a full disk, a kill or a refusal never
leaves half a config, an empty PNG or a truncated copy of weights. A failure is one line naming the file.

A new file gets the mode the user's umask gives (as `>` in a shell would); a file written over keeps its own.
A symbolic link is written through: the file it points to changes and the link stays. A pipe or a character
device (/dev/null, a terminal) cannot be renamed over and is written in place; a block device or a socket is
refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hpsearch.errors import HpsearchError

PROBE_BYTES = 4096  # one page: what a folder must take before a run relies on it
PIPE_WAIT_S = 10.0  # how long an output that is a pipe may wait for its reader


class CannotWrite(HpsearchError):
    """A file hpsearch could not write: the system's reason, and what would fix it where that is known."""

    def __init__(self, path: Path, exc: OSError | str, shown: str | None = None):
        self.path = path
        self.reason = exc if isinstance(exc, str) else exc.strerror or str(exc)
        self.remedy = None if isinstance(exc, str) else remedy(exc)
        fix = _either(self.remedy, "choose another place")
        super().__init__(f"cannot write {shown or path} ({self.reason}): {fix}")


def remedy(exc: OSError) -> str | None:
    """What fixes the place a write failed in with `exc`, where one thing does."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space there"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make it writable"
    return None


def _either(fix: str | None, otherwise: str) -> str:
    return f"{fix} or {otherwise}" if fix else otherwise


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` to `path` whole, or raise CannotWrite and leave `path` as it was."""
    data = content.encode() if isinstance(content, str) else content
    with _replacing(path) as temporary:
        temporary.write_bytes(data)


def copy_atomic(source: Path, path: Path) -> None:
    """Copy `source` to `path` whole, or raise CannotWrite and leave `path` as it was."""
    with _replacing(path) as temporary:
        shutil.copyfile(source, temporary)


def save_atomic(path: Path, save: Callable[[Path], None]) -> None:
    """save(temporary) writes the file (a plot, say); it then takes `path`'s place whole."""
    with _replacing(path) as temporary:
        save(temporary)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file to write, which then takes the place of `path` (of the file it links to), or for a pipe
    or a character device is copied into it."""
    temporary = None
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    shown = f"{path} -> {target}" if target != path else str(path)
    try:
        kind = _mode(path)
        if kind is not None and (stat.S_ISBLK(kind) or stat.S_ISSOCK(kind)):
            what = "socket" if stat.S_ISSOCK(kind) else "block device"
            raise CannotWrite(path, f"a {what} is no file to write", shown)
        in_place = kind is not None and (stat.S_ISFIFO(kind) or stat.S_ISCHR(kind))
        temporary = _new_file(Path(tempfile.gettempdir()) if in_place else target.parent, target.name)
        made_with = stat.S_IMODE(os.stat(temporary).st_mode)
        yield temporary
        if in_place:
            _copy_into(temporary, path, kind, shown)
        else:
            # the mode it was made with, even where the writer replaced the file (safetensors' is 0600)
            os.chmod(temporary, stat.S_IMODE(kind) if kind is not None and stat.S_ISREG(kind) else made_with)
            os.replace(temporary, target)
            temporary = None
    except OSError as exc:
        raise CannotWrite(path, exc, shown) from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _mode(path: Path) -> int | None:
    """The st_mode of what `path` names (through any links), None if nothing is there yet."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None


def _new_file(folder: Path, name: str) -> Path:
    """An empty file of a fresh hidden name in `folder`, made with the mode the umask gives (mkstemp's is 0600)."""
    while True:
        candidate = folder / f".{name}.{secrets.token_hex(4)}.partial"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return candidate
        except FileExistsError:
            continue


def _copy_into(temporary: Path, path: Path, kind: int, shown: str) -> None:
    """The temporary file's bytes written into the pipe or device at `path`. A pipe is given PIPE_WAIT_S for its
    reader to open it (`cat pipe &` may start after hpsearch), then refused rather than waited on for ever."""
    deadline = time.monotonic() + PIPE_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a pipe with no reader: ENXIO at once
            break
        except OSError as exc:
            if not (exc.errno == errno.ENXIO and stat.S_ISFIFO(kind)):
                raise
            if time.monotonic() >= deadline:
                raise CannotWrite(path, f"a pipe no program read within {PIPE_WAIT_S:g} s: start its reader first",
                                  shown) from None
            time.sleep(0.05)
    os.set_blocking(fd, True)
    with open(fd, "wb") as out, temporary.open("rb") as source:
        shutil.copyfileobj(source, out)


def check_writable(folder: Path, what: str, otherwise: str) -> None:
    """Refuse now, in one line, a folder that files cannot be written in: full, read-only, not permitted. A page
    is written and removed where the folder is (or would be made: the nearest existing folder above it), since
    os.access sees neither a full disk nor, for root, missing permissions. `otherwise` is the way round it."""
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    probe = None
    try:
        probe = _new_file(existing, "hpsearch-probe")
        with probe.open("wb") as file:
            file.write(b"\0" * PROBE_BYTES)
            file.flush()
            os.fsync(file.fileno())  # a network file system may report a full disk only here
    except OSError as exc:
        raise HpsearchError(f"cannot write {what} {folder} ({exc.strerror or exc}): "
                            f"{_either(remedy(exc), otherwise)}") from None
    finally:
        if probe is not None:
            probe.unlink(missing_ok=True)


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
