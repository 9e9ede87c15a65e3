"""Image folders as users really leave them: empty class folders, links to nowhere or to themselves, file
names that are not UTF-8. Empty classes are refused by name; unreadable entries are skipped and counted."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from hpsearch.errors import DatasetError
from hpsearch.training import imagefolder


def test_an_empty_class_folder_is_refused_by_name(image_folder, isolated):
    root = image_folder(isolated / "pets")
    (root / "bird").mkdir()
    with pytest.raises(DatasetError, match="class folder without images: bird; add images or remove the folder"):
        imagefolder.read_image_folder(root, (8, 8))


def test_a_link_to_an_empty_folder_is_no_class_either(image_folder, isolated):
    root = image_folder(isolated / "pets", classes=("cat",))
    (isolated / "nothing").mkdir()
    os.symlink(isolated / "nothing", root / "dog")
    with pytest.raises(DatasetError, match="without images: dog;"):
        imagefolder.read_image_folder(root, (8, 8))


def test_a_linked_class_folder_with_images_counts(image_folder, isolated):
    root = image_folder(isolated / "pets")
    shutil.move(root / "dog", isolated / "dogs-elsewhere")
    os.symlink(isolated / "dogs-elsewhere", root / "dog")
    x, y, classes = imagefolder.read_image_folder(root, (8, 8))
    assert classes == ("cat", "dog") and y.tolist() == [0] * 6 + [1] * 6


def test_dangling_and_looping_links_are_skipped_and_counted(image_folder, isolated, caplog):
    root = image_folder(isolated / "pets")
    os.symlink(root / "cat" / "gone.png", root / "cat" / "dangling.png")
    os.symlink(root / "dog" / "loop.jpg", root / "dog" / "loop.jpg")
    with caplog.at_level(logging.WARNING, logger="hpsearch.training"):
        x, y, classes = imagefolder.read_image_folder(root, (8, 8))
    assert len(y) == 12 and classes == ("cat", "dog")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "skipped 2 unreadable images of 14" in warning and "cat/dangling.png: No such file" in warning


def test_a_file_name_that_is_not_utf8_is_read_and_shown_escaped(image_folder, isolated, caplog):
    root = image_folder(isolated / "pets")
    raw = os.fsencode(root / "cat") + b"/caf\xe9.png"  # Latin-1, as an old camera or archive writes it
    os.rename(os.fsencode(root / "cat" / "0.png"), raw)
    (root / "dog" / "1.png").write_bytes(b"not an image")  # so that a message names a file
    os.rename(os.fsencode(root / "dog" / "1.png"), os.fsencode(root / "dog") + b"/bad\xff.png")
    with caplog.at_level(logging.WARNING, logger="hpsearch.training"):
        x, y, classes = imagefolder.read_image_folder(root, (8, 8))
    assert len(y) == 11
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "dog/bad\\xff.png" in warning
    warning.encode("utf-8")  # nothing unprintable left in it


def _run(study_file):
    from tests.helpers import invoke

    return invoke("run", "--study", str(study_file), "--device", "cpu", "--n-trials", "1", "--keep-weights", "0")


def test_class_folders_named_to_forge_a_line_or_drive_the_terminal_are_shown_escaped(image_folder, isolated,
                                                                                     write_study, caplog):
    """A newline and ANSI escapes in class folder names (an archive from anywhere may hold them): every message
    naming them is one line, the names escaped; the folder still trains."""
    root = image_folder(isolated / "data" / "pets", classes=("cat\nerror: forged", "dog\x1b[31m"))
    (root / "bird\nerror: forged too\x1b[2J").mkdir()
    study = write_study(dataset={"name": "imagefolder", "path": "pets", "image_size": 8, "validation": 2, "test": 2})
    refused = _run(study)
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert refused.stderr.splitlines() == [
        f"error: {root}: class folder without images: bird\\nerror: forged too\\x1b[2J; add images or remove the "
        "folder (the model would get a class no image teaches)"]

    image_folder(isolated / "data" / "solo", classes=("cat\nerror: forged",))
    alone = _run(write_study("solo.yaml", dataset={"name": "imagefolder", "path": "solo", "image_size": 8}))
    assert alone.exit_code == 2 and [line for line in alone.stderr.splitlines() if "error" in line] == [
        f"error: {isolated / 'data' / 'solo'}: one class folder only (cat\\nerror: forged); a classifier needs two or "
        "more"]

    (root / "bird\nerror: forged too\x1b[2J").rmdir()
    (root / "dog\x1b[31m" / "bad.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="hpsearch.training"):
        ran = _run(study)
    assert ran.exit_code == 0, ran.output
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "skipped 1 unreadable image of 13 (dog\\x1b[31m/bad.png: cannot identify image file" in warning
    for said in (ran.output, warning):
        assert "\x1b" not in said and not any(line.startswith("error") for line in said.splitlines())
