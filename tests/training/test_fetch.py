"""`hpsearch fetch`: each dataset from a local HTTP server standing in for its official source (tiny archives of the
official layout, made here), checked by size and sha256, resumed, and laid out where hpsearch's readers read it."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpsearch.errors import DatasetError
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata
from hpsearch.training import fetch as fetch_module
from hpsearch.training.fetch import SOURCES, fetch
from tests.helpers import invoke

CPU = torch.device("cpu")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder, honouring `Range: bytes=N-` as the official servers do (SimpleHTTPRequestHandler sends the
    whole file); notes each request's range."""

    ranges: list[str | None] = []
    honour_range = True

    def send_head(self):
        asked = self.headers.get("Range")
        type(self).ranges.append(asked)
        path = Path(self.translate_path(self.path))
        if not (asked and self.honour_range and path.is_file()):
            return super().send_head()
        start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
        body = path.read_bytes()[start:]
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, its URL): a real HTTP server on 127.0.0.1 in a thread."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (RangeHandler,), {"ranges": [], "honour_range": True})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def jpeg(seed: int, tint: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 120, (16, 12, 3))
    pixels[..., tint] += 120
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def as_served(source_name: str, path: Path, *, sha256: str | None = "computed") -> fetch_module.Source:
    """The real table's entry, its one download replaced by the tiny archive at `path` (its size and sha256)."""
    source = SOURCES[source_name]
    data = path.read_bytes()
    download = dataclasses.replace(source.downloads[0], size=len(data),
                                   sha256=hashlib.sha256(data).hexdigest() if sha256 == "computed" else sha256)
    return dataclasses.replace(source, downloads=(download,))


def test_stanford_dogs_is_fetched_checked_and_laid_out_as_breed_folders_that_the_study_reads(server, tmp_path):
    folder, url, _ = server
    breeds = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel")
    members = {f"Images/{breed}/{breed.split('-')[0]}_{i}.jpg": jpeg(i, b) for b, breed in enumerate(breeds)
               for i in range(6)}
    members["Images/README.txt"] = b"not an image"  # skipped
    members["Images/../../escaped.jpg"] = jpeg(0, 0)  # a name leaving the folder: skipped
    source = as_served("stanford-dogs", write_tar(folder / "images.tar", members))

    where = fetch(source, tmp_path / "data", mirror=url)

    assert where == tmp_path / "data" / "stanford-dogs"
    assert sorted(p.relative_to(where).as_posix() for p in where.rglob("*.jpg")) == sorted(
        m.removeprefix("Images/") for m in members if m.endswith(".jpg") and ".." not in m)
    assert not (where / "README.txt").exists() and not (tmp_path / "escaped.jpg").exists()
    assert list((tmp_path / "data" / "downloads").iterdir()) == []  # the archive, unpacked, is gone
    # The shipped study's dataset, read by hpsearch's own reader: the breeds are the classes.
    data = devicedata.load(DatasetSpec("imagefolder", path="stanford-dogs", image_size=(8, 8), validation=2, test=2),
                           CPU, tmp_path / "data")
    assert data.classes == breeds and len(data.train_y) + len(data.val_y) + len(data.test_y) == 12


def test_cats_vs_dogs_keeps_its_train_and_validation_folders_and_drops_what_is_not_an_image(server, tmp_path):
    folder, url, _ = server
    archive = folder / "cats_and_dogs_filtered.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cats_and_dogs_filtered/vectorize.py", "print('not an image')")
        for split, first in (("train", 0), ("validation", 2000)):
            for label, animal in enumerate(("cat", "dog")):
                for i in range(first, first + 4):
                    z.writestr(f"cats_and_dogs_filtered/{split}/{animal}s/{animal}.{i}.jpg", jpeg(i, label))

    where = fetch(as_served("cats-vs-dogs", archive, sha256=None), tmp_path / "data", mirror=url)  # checked by size

    assert sorted(p.relative_to(where).as_posix() for p in where.rglob("*") if p.is_file())[:2] == [
        "train/cats/cat.0.jpg", "train/cats/cat.1.jpg"]
    assert len(list(where.rglob("*.jpg"))) == 16 and not (where / "vectorize.py").exists()
    data = devicedata.load(DatasetSpec("imagefolder", path="cats-vs-dogs", image_size=(8, 8), test=2),
                           CPU, tmp_path / "data")
    assert data.classes == ("cats", "dogs") and len(data.val_y) == 8  # validation/ is the validation split


def test_fashion_mnist_files_land_where_its_reader_looks(server, tmp_path):
    folder, url, _ = server
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    source = SOURCES["fashion-mnist"]
    source = dataclasses.replace(source, downloads=tuple(
        dataclasses.replace(d, size=(folder / d.file).stat().st_size,
                            sha256=hashlib.sha256((folder / d.file).read_bytes()).hexdigest()) for d in source.downloads))

    fetch(source, tmp_path / "data", mirror=url)

    data = devicedata.load(DatasetSpec("fashion-mnist", validation=10), CPU, tmp_path / "data")
    assert data.source == str(tmp_path / "data" / "FashionMNIST" / "raw") and len(data.test_y) == 10


def test_cifar10_unpacks_torchvisions_folder(server, tmp_path):
    folder, url, _ = server
    names = ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "readme.html"]
    archive = write_tar(folder / "cifar-10-python.tar.gz", {f"cifar-10-batches-py/{n}": n.encode() for n in names},
                        mode="w:gz")
    where = fetch(as_served("cifar10", archive), tmp_path / "data", mirror=url)
    assert where == tmp_path / "data" / "cifar-10-batches-py"
    assert sorted(p.name for p in where.iterdir()) == sorted(names)
    assert (where / "test_batch").read_bytes() == b"test_batch"


def test_a_wrong_checksum_is_one_line_naming_the_file_and_the_fix_and_leaves_nothing(server, tmp_path, monkeypatch):
    folder, url, _ = server
    archive = write_tar(folder / "images.tar", {"Images/n1-a/1.jpg": jpeg(0, 0), "Images/n2-b/2.jpg": jpeg(1, 1)})
    monkeypatch.setitem(SOURCES, "stanford-dogs", as_served("stanford-dogs", archive, sha256="0" * 64))

    result = invoke("fetch", "stanford-dogs", "--data-dir", str(tmp_path / "data"), "--mirror", url)

    got = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {tmp_path / 'data' / 'downloads' / 'images.tar'} is not the official images.tar: "
                      f"sha256 {got}, not the published {'0' * 64} (as "
                      f"{SOURCES['stanford-dogs'].downloads[0].checksum_from} publish it); removed it: run the command "
                      "again to download it anew"]
    assert list((tmp_path / "data").rglob("*")) == [tmp_path / "data" / "downloads"]


def test_the_real_table_refuses_a_file_that_is_not_the_official_one(server, tmp_path):
    """No test can download the real archives; a mirror serving another file is refused by the published size."""
    folder, url, _ = server
    write_tar(folder / "images.tar", {"Images/n1-a/1.jpg": jpeg(0, 0)})
    result = invoke("fetch", "stanford-dogs", "--data-dir", str(tmp_path / "data"), "--mirror", url)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is not the official images.tar: " in result.stderr and "not the published 793,579,520 (" in result.stderr


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    folder, url, handler = server
    archive = write_tar(folder / "images.tar", {f"Images/n{c}-x/{i}.jpg": jpeg(i, c) for c in (1, 2) for i in range(3)})
    downloads = tmp_path / "data" / "downloads"
    downloads.mkdir(parents=True)
    half = archive.stat().st_size // 2
    (downloads / "images.tar.part").write_bytes(archive.read_bytes()[:half])

    fetch(as_served("stanford-dogs", archive), tmp_path / "data", mirror=url)

    assert handler.ranges == [f"bytes={half}-"]
    assert len(list((tmp_path / "data" / "stanford-dogs").rglob("*.jpg"))) == 6


def test_a_server_that_ignores_the_range_gets_the_whole_file_again(server, tmp_path):
    folder, url, handler = server
    handler.honour_range = False
    archive = write_tar(folder / "images.tar", {f"Images/n{c}-x/{i}.jpg": jpeg(i, c) for c in (1, 2) for i in range(3)})
    downloads = tmp_path / "data" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "images.tar.part").write_bytes(b"x" * 100)  # not even the file's start
    fetch(as_served("stanford-dogs", archive), tmp_path / "data", mirror=url)
    assert len(list((tmp_path / "data" / "stanford-dogs").rglob("*.jpg"))) == 6


def test_a_file_put_in_downloads_by_hand_is_used_without_a_server(tmp_path):
    archive = write_tar(tmp_path / "images.tar", {"Images/n1-a/1.jpg": jpeg(0, 0), "Images/n2-b/2.jpg": jpeg(1, 1)})
    source = as_served("stanford-dogs", archive)
    (tmp_path / "data" / "downloads").mkdir(parents=True)
    archive.rename(tmp_path / "data" / "downloads" / "images.tar")
    fetch(source, tmp_path / "data", mirror="http://127.0.0.1:9")  # nothing listens on port 9
    assert (tmp_path / "data" / "stanford-dogs" / "n1-a" / "1.jpg").is_file()


def test_an_unreachable_server_and_a_fetched_dataset_are_one_line_each(tmp_path):
    result = invoke("fetch", "cifar10", "--data-dir", str(tmp_path / "data"), "--mirror", "http://127.0.0.1:9")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1].startswith("error: cannot download http://127.0.0.1:9/cifar-10-python.tar.gz (")
    assert "check the connection" in result.stderr
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    result = invoke("fetch", "cifar10", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2 and result.stderr.splitlines()[-1] == (
        f"error: cifar10: {tmp_path / 'data' / 'cifar-10-batches-py'} exists already; delete it to fetch cifar10 again")


def test_fetch_lists_its_datasets_and_refuses_another_name():
    listed = invoke("fetch")
    assert listed.exit_code == 0 and all(f"\n{name} " in listed.stdout for name in SOURCES)
    result = invoke("fetch", "imagenet")
    assert result.exit_code == 2 and "'imagenet' is not one of 'cifar10', 'cifar100'" in result.stderr


def test_every_dataset_a_shipped_study_reads_can_be_fetched():
    from hpsearch.studyfile import catalog

    for path in catalog.shipped_study_files():
        dataset = catalog.load_study_spec(str(path)).dataset
        if dataset.name == "digits":
            continue  # inside scikit-learn
        if dataset.name == "imagefolder":
            assert dataset.path in {s.folder for s in SOURCES.values()}, path.name
        else:
            assert dataset.name in SOURCES, path.name


def test_a_damaged_archive_is_one_line(server, tmp_path):
    folder, url, _ = server
    (folder / "images.tar").write_bytes(b"not a tar archive at all" * 40)
    with pytest.raises(DatasetError, match=r"^stanford-dogs: cannot unpack \S*images.tar \(damaged, or not a tar archive\): delete it and fetch again$"):
        fetch(as_served("stanford-dogs", folder / "images.tar"), tmp_path / "data", mirror=url)
    assert not (tmp_path / "data" / "stanford-dogs").exists()
    assert not any(p.name.startswith(".stanford-dogs") for p in (tmp_path / "data").iterdir())


def test_the_published_table_is_complete():
    for source in SOURCES.values():
        for download in source.downloads:
            assert download.size > 0 and download.url.endswith("/" + download.file)
            assert download.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", download.sha256)
        assert source.licence and source.cite and source.homepage.startswith("http")
    assert [s.name for s in SOURCES.values() if any(d.sha256 is None for d in s.downloads)] == ["cats-vs-dogs"]
