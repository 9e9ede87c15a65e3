"""`hpsearch fetch NAME`: a dataset the shipped studies read, downloaded from its official source, checked, and laid
out in the data folder where its reader (datasets.py) looks for it.

Each download is checked against the size and sha256 its source or a well-known catalogue publishes (where none
is published, by size alone, and the docs say so). A download goes to DATA/downloads/FILE.part, continues where it
stopped when the server allows it, and takes its name only once it is whole and checked; a file already there
under its name that passes the check is used as it is, which is how a machine without internet gets one (copy the
official file there). The unpacked files are written into a temporary folder beside their place and renamed into
it at the end, so a dataset's folder is there whole or not at all. `$HPSEARCH_DATA_MIRROR` (or --mirror) fetches
every file as MIRROR/FILE instead: for a local copy of the official files, and for the tests.

Torch-free: nothing here trains, and `hpsearch fetch` starts in a moment.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from hpsearch import __version__
from hpsearch.errors import DatasetError
from hpsearch.words import plural

MIRROR_ENV = "HPSEARCH_DATA_MIRROR"
DOWNLOADS = "downloads"  # under the data folder
CHUNK = 1 << 20  # bytes read and hashed at a time
TIMEOUT_S = 60.0  # a server silent this long ends the download (what was received is kept and resumed)

Progress = Callable[[str, int, int], None]  # progress(what, done, total), in bytes or files


@dataclass(frozen=True)
class Download:
    """One official file: where it is, and what its publisher (or a catalogue that checked it) says it is."""

    url: str
    size: int  # bytes
    sha256: str | None  # None: no checksum is published anywhere we could find; the size is checked
    checksum_from: str  # who publishes the size and checksum

    @property
    def file(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Source:
    """A dataset hpsearch can fetch: its files, where they come from, their terms, and how they are laid out."""

    name: str  # what `hpsearch fetch` takes
    about: str
    homepage: str
    licence: str
    cite: str
    downloads: tuple[Download, ...]
    folder: str  # what it becomes, under the data folder
    lay_out: Callable[[list[Path], Path, Progress], None]  # (checked downloads, a fresh folder, progress)

    @property
    def size(self) -> int:
        return sum(d.size for d in self.downloads)


# --------------------------------------------------------------------------------------------
# Laying out: the official archives -> the folders the readers read.


def _members_as(prefix: str, keep: Callable[[PurePosixPath], bool] = lambda path: True):
    """A member name -> its place in the new folder: names under `prefix` with the prefix removed (None for the
    rest, and for any name that would leave the folder)."""

    def place(name: str) -> PurePosixPath | None:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not name.startswith(prefix):
            return None
        inside = PurePosixPath(name[len(prefix):])
        return inside if inside.parts and keep(inside) else None

    return place


def _is_jpeg(path: PurePosixPath) -> bool:
    return path.suffix.lower() in (".jpg", ".jpeg")


def _unpack_tar(prefix: str, keep: Callable[[PurePosixPath], bool] = lambda path: True):
    """Lay out the regular files of one tar archive (gzip or not) found under `prefix` (links, devices and names
    outside it are skipped)."""
    place = _members_as(prefix, keep)

    def lay_out(files: list[Path], into: Path, progress: Progress) -> None:
        with tarfile.open(files[0]) as archive:
            members = [(m, where) for m in archive.getmembers() if m.isfile() and (where := place(m.name))]
            for done, (member, where) in enumerate(members, start=1):
                _write_from(archive.extractfile(member), into / where)
                progress("unpacked", done, len(members))
        _check_not_empty(files[0], into, prefix)

    return lay_out


def _unpack_zip(prefix: str, keep: Callable[[PurePosixPath], bool] = lambda path: True):
    """Lay out the files of one zip archive found under `prefix`."""
    place = _members_as(prefix, keep)

    def lay_out(files: list[Path], into: Path, progress: Progress) -> None:
        with zipfile.ZipFile(files[0]) as archive:
            members = [(m, where) for m in archive.infolist() if not m.is_dir() and (where := place(m.filename))]
            for done, (member, where) in enumerate(members, start=1):
                with archive.open(member) as stream:
                    _write_from(stream, into / where)
                progress("unpacked", done, len(members))
        _check_not_empty(files[0], into, prefix)

    return lay_out


def _copy_files(files: list[Path], into: Path, progress: Progress) -> None:
    """The downloads as they are (Fashion-MNIST's gzipped idx files, which its reader reads as they are)."""
    for done, path in enumerate(files, start=1):
        with gzip.open(path) as stream:  # a damaged gzip fails here, not at the first run
            while stream.read(CHUNK):
                pass
        shutil.copyfile(path, into / path.name)
        progress("copied", done, len(files))


def _write_from(stream: BinaryIO | None, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        shutil.copyfileobj(stream, out, CHUNK)


def _check_not_empty(archive: Path, into: Path, prefix: str) -> None:
    if not any(into.iterdir()):
        raise DatasetError(f"{archive} holds no files under {prefix}: it is not the official archive; delete it and "
                           "fetch again")


_CIFAR_LICENCE = "none stated; the authors ask that the technical report be cited"
_CIFAR_CITE = "Alex Krizhevsky, Learning Multiple Layers of Features from Tiny Images, technical report, 2009"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_TFDS = "TensorFlow Datasets' url_checksums"

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("cifar10", "CIFAR-10, the python version torchvision reads: 60,000 32x32 colour images, 10 classes",
           "https://www.cs.toronto.edu/~kriz/cifar.html", _CIFAR_LICENCE, _CIFAR_CITE,
           (Download("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 170_498_071,
                     "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                     "torchvision (md5 c58f30108f718f92721af3b95e74349a) and Keras (sha256)"),),
           "cifar-10-batches-py", _unpack_tar("cifar-10-batches-py/")),
    Source("cifar100", "CIFAR-100, the python version torchvision reads: 60,000 32x32 colour images, 100 classes",
           "https://www.cs.toronto.edu/~kriz/cifar.html", _CIFAR_LICENCE, _CIFAR_CITE,
           (Download("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", 169_001_437,
                     "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                     "torchvision (md5 eb9058c3a382ffc7106e4002c42a8d85) and its prototype datasets (sha256)"),),
           "cifar-100-python", _unpack_tar("cifar-100-python/")),
    Source("fashion-mnist", "Fashion-MNIST, Zalando's 70,000 28x28 grey images of clothing, 10 classes",
           "https://github.com/zalandoresearch/fashion-mnist", "MIT",
           "Han Xiao, Kashif Rasul, Roland Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine "
           "Learning Algorithms, arXiv:1708.07747, 2017",
           tuple(Download(_FASHION_URL + file, size, sha256, _TFDS) for file, size, sha256 in (
               ("train-images-idx3-ubyte.gz", 26_421_880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
               ("train-labels-idx1-ubyte.gz", 29_515,
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
               ("t10k-images-idx3-ubyte.gz", 4_422_102,
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
               ("t10k-labels-idx1-ubyte.gz", 5_148,
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"))),
           "FashionMNIST/raw", _copy_files),
    Source("stanford-dogs", "Stanford Dogs: 20,580 photographs of 120 breeds (from ImageNet), as <breed>/<image>.jpg",
           "http://vision.stanford.edu/aditya86/ImageNetDogs/",
           "none stated; the images are ImageNet's, whose terms allow non-commercial research and education",
           "Aditya Khosla, Nityananda Jayadevaprakash, Bangpeng Yao, Li Fei-Fei, Novel Dataset for Fine-Grained "
           "Image Categorization, First Workshop on Fine-Grained Visual Categorization, CVPR 2011",
           (Download("http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar", 793_579_520,
                     "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58", _TFDS),),
           "stanford-dogs", _unpack_tar("Images/", _is_jpeg)),
    Source("cats-vs-dogs", "cats_and_dogs_filtered: 3,000 photographs from Kaggle's Dogs vs. Cats (Asirra), as "
           "train/ (1,000 a class) and validation/ (500 a class), the data of TensorFlow's tutorials",
           "https://www.tensorflow.org/tutorials/images/classification",
           "none stated; the images are Petfinder's, given to Microsoft Research for Asirra and offered by Kaggle "
           "'for fun and research'",
           "Jeremy Elson, John R. Douceur, Jon Howell, Jared Saul, Asirra: a CAPTCHA that exploits "
           "interest-aligned manual image categorization, ACM CCS 2007",
           (Download("https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip", 68_606_236, None,
                     "TensorFlow's tutorials (size only: no checksum is published)"),),
           "cats-vs-dogs", _unpack_zip("cats_and_dogs_filtered/", _is_jpeg)),
)}


# --------------------------------------------------------------------------------------------
# Fetching: download, check, lay out.


def fetch(source: Source, data_dir: Path, *, mirror: str | None = None,
          progress: Progress = lambda what, done, total: None) -> Path:
    """Download `source`'s files (or take those already downloaded), check each, and lay the dataset out in
    DATA/source.folder; returns that folder. DatasetError names the file and the fix."""
    target = data_dir / source.folder
    if target.exists():
        raise DatasetError(f"{source.name}: {target} exists already; delete it to fetch {source.name} again")
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    downloads = data_dir / DOWNLOADS
    _make_folder(downloads)
    files = [_download(d, downloads, mirror, progress) for d in source.downloads]
    with _new_folder(target) as fresh:
        try:
            source.lay_out(files, fresh, progress)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile) as exc:
            kind = "zip" if isinstance(exc, zipfile.BadZipFile) else "tar" if ".tar" in files[0].suffixes else "gzip"
            raise DatasetError(f"{source.name}: cannot unpack {files[0]} (damaged, or not a {kind} archive): delete "
                               "it and fetch again") from None
    for path in files:  # unpacked: the archive would only double the space it takes
        path.unlink()
    return target


def _download(download: Download, folder: Path, mirror: str | None, progress: Progress) -> Path:
    """The file in `folder`, checked: the one there already, or downloaded (resumed from a .part file)."""
    import urllib.error  # here, not at the top: the CLI imports this module at every start for its table

    path = folder / download.file
    if path.is_file():
        _check(download, path, path)
        return path
    url = f"{mirror.rstrip('/')}/{download.file}" if mirror else download.url
    part = path.with_name(path.name + ".part")
    try:
        _receive(url, part, download, progress)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        kept = f" ({plural(part.stat().st_size, 'byte')} kept: run it again to resume)" if part.is_file() else ""
        raise DatasetError(f"cannot download {url} ({reason}){kept}: check the connection, or put the official "
                           f"{download.file} in {folder} yourself, or set ${MIRROR_ENV} to a mirror") from None
    except OSError as exc:
        raise DatasetError(f"cannot write {part} ({exc.strerror or exc}): free space there or choose another "
                           "--data-dir") from None
    _check(download, part, path)
    part.rename(path)
    return path


def _receive(url: str, part: Path, download: Download, progress: Progress) -> None:
    """Append what the server sends to `part`: from where it stopped if the server honours a Range, else anew."""
    import urllib.request  # as _download's

    have = part.stat().st_size if part.is_file() else 0
    if have >= download.size:  # complete, or longer than the file can be: _check says which
        return
    request = urllib.request.Request(url, headers={"User-Agent": f"hpsearch/{__version__}",
                                                   **({"Range": f"bytes={have}-"} if have else {})})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        resumed = have and response.status == 206
        with open(part, "ab" if resumed else "wb") as out:
            done = have if resumed else 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                progress(download.file, done, download.size)
                if done > download.size:
                    break  # more than the official file holds: _check says so


def _check(download: Download, path: Path, final: Path) -> None:
    """The file's size and sha256 against the published ones; a file that fails is removed (a .part one would
    otherwise be resumed), and the line says what to do."""
    size = path.stat().st_size
    if size != download.size:
        problem = f"{plural(size, 'byte')}, not the published {download.size:,}"
    elif download.sha256 is not None and (got := _sha256(path)) != download.sha256:
        problem = f"sha256 {got}, not the published {download.sha256}"
    else:
        return
    path.unlink()
    raise DatasetError(f"{final} is not the official {download.file}: {problem} (as {download.checksum_from} "
                       "publish it); removed it: run the command again to download it anew")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot make the folder {folder} ({exc.strerror or exc}): choose another --data-dir") \
            from None


@contextlib.contextmanager
def _new_folder(target: Path) -> Iterator[Path]:
    """A fresh folder beside `target` to fill, renamed to `target` when filled; removed if filling fails."""
    _make_folder(target.parent)
    fresh = target.with_name(f".{target.name}.partial")
    shutil.rmtree(fresh, ignore_errors=True)  # what an interrupted fetch left
    fresh.mkdir()
    try:
        yield fresh
        fresh.rename(target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


class EveryFewSeconds:
    """A Progress that writes a line at most every `seconds`, and the last one of each kind: a download of minutes
    says it is alive, in a terminal and in a log alike."""

    def __init__(self, write: Callable[[str], None], seconds: float = 5.0):
        self.write = write
        self.seconds = seconds
        self.last = float("-inf")

    def __call__(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self.last >= self.seconds:
            self.last = now
            share = f" ({done / total:.0%})" if total else ""
            self.write(f"{what}: {done:,} of {total:,}{share}")
