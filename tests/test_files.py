"""Files hpsearch writes appear whole or not at all, and a refused command leaves no half-made output."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.errors import HpsearchError
from hpsearch import files
from hpsearch.files import output_folder, save_atomic, write_atomic

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_debris(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"the old plot")

    def save_then_fail(temporary: Path) -> None:
        temporary.write_bytes(b"half a plo")
        raise OSError(28, "No space left on device")

    with pytest.raises(HpsearchError, match=r"cannot write .*plot.png \(No space left on device\): free space"):
        save_atomic(path, save_then_fail)
    assert path.read_bytes() == b"the old plot" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    write_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_a_refusal_removes_the_output_folder_it_made_but_never_one_that_was_there(tmp_path):
    with pytest.raises(HpsearchError), output_folder(tmp_path / "new" / "out", "--out") as made:
        (made / "config.yaml").write_text("x")
        raise HpsearchError("refused")
    assert not (tmp_path / "new" / "out").exists()
    (tmp_path / "there").mkdir()
    with pytest.raises(HpsearchError), output_folder(tmp_path / "there", "--out"):
        raise HpsearchError("refused")
    assert (tmp_path / "there").is_dir()


@pytest.fixture
def exported(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "old.db", tmp_path / "old.db")
    result = CliRunner().invoke(main, ["export", "--study", "tiny", "--storage", "sqlite:///old.db", "-o", "t.yaml"])
    assert result.exit_code == 0, result.output
    return tmp_path / "t.yaml"


def test_export_to_an_impossible_place_is_one_line(exported):
    result = CliRunner().invoke(main, ["export", "--study", "tiny", "--storage", "sqlite:///old.db",
                                       "-o", "/proc/t.yaml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == "error: cannot write /proc/t.yaml (No such file or directory): choose another place"


def test_a_refused_train_leaves_no_output_folder(exported, tmp_path, monkeypatch):
    config = yaml.safe_load(exported.read_text())
    config["dataset"]["name"] = "cifar10"  # not on this machine, and downloads are off
    exported.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("HPSEARCH_OFFLINE", "1")
    result = CliRunner().invoke(main, ["train", "--config", "t.yaml", "--out", "trained", "--device", "cpu",
                                       "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "cifar10 not found" in result.output
    assert not (tmp_path / "trained").exists()


@pytest.fixture
def umask_027():
    before = os.umask(0o027)
    yield
    os.umask(before)


def test_a_new_file_honours_the_umask_and_a_rewritten_one_keeps_its_mode(tmp_path, umask_027):
    path = tmp_path / "report.md"
    write_atomic(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 less the umask, not mkstemp's 0600
    path.chmod(0o604)
    write_atomic(path, "again")
    assert stat.S_IMODE(path.stat().st_mode) == 0o604 and path.read_text() == "again"


def test_an_output_that_is_a_link_is_written_through_and_the_link_kept(exported, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept.yaml").write_text("old")
    (elsewhere / "kept.yaml").chmod(0o644)
    (tmp_path / "link.yaml").symlink_to(elsewhere / "kept.yaml")
    (tmp_path / "dangling.yaml").symlink_to(elsewhere / "new.yaml")
    for link in ("link.yaml", "dangling.yaml"):
        result = CliRunner().invoke(main, ["export", "--study", "tiny", "--storage", "sqlite:///old.db", "-o", link])
        assert result.exit_code == 0, result.output
        assert (tmp_path / link).is_symlink()
    written = [yaml.safe_load(f.read_text()) for f in (exported, elsewhere / "kept.yaml", elsewhere / "new.yaml")]
    assert written[0] == written[1] == written[2]
    assert stat.S_IMODE((elsewhere / "kept.yaml").stat().st_mode) == 0o644
    assert sorted(p.name for p in elsewhere.iterdir()) == ["kept.yaml", "new.yaml"]


def test_a_link_to_a_full_device_is_one_line_and_a_nonzero_exit(exported, tmp_path):
    (tmp_path / "full.yaml").symlink_to("/dev/full")
    result = CliRunner().invoke(main, ["export", "--study", "tiny", "--storage", "sqlite:///old.db", "-o", "full.yaml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == ["error: cannot write full.yaml -> /dev/full (No space left on device): "
                                                  "free space there or choose another place"]
    assert (tmp_path / "full.yaml").is_symlink() and os.readlink(tmp_path / "full.yaml") == "/dev/full"


def test_a_pipe_is_written_in_place_and_one_nobody_reads_is_refused_after_a_wait(tmp_path, monkeypatch):
    pipe = tmp_path / "config.yaml"
    os.mkfifo(pipe)
    monkeypatch.setattr(files, "PIPE_WAIT_S", 0.5)
    with pytest.raises(HpsearchError, match=r"config.yaml \(a pipe no program read within 0.5 s: start its reader"):
        write_atomic(pipe, "nobody reads this")
    monkeypatch.undo()
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # open before hpsearch writes, as `cat pipe &` would be
    write_atomic(pipe, "through the pipe")
    assert os.read(reader, 100) == b"through the pipe"
    os.close(reader)
    with ThreadPoolExecutor(1) as late:  # a reader that opens the pipe a moment after hpsearch began to write
        opened = late.submit(lambda: (time.sleep(0.2), os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))[1])
        write_atomic(pipe, "waited for")
        reader = opened.result()
    assert os.read(reader, 100) == b"waited for"
    os.close(reader)
    assert stat.S_ISFIFO(pipe.stat().st_mode) and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    write_atomic(Path("/dev/null"), "gone")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_socket_is_no_output_file(tmp_path):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "report.md"))
        with pytest.raises(HpsearchError, match=r"^cannot write .*report.md \(a socket is no file to write\): choose"):
            write_atomic(tmp_path / "report.md", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_every_file_a_user_gets_is_whole_and_has_the_umask_s_mode(write_study, image_folder, isolated, umask_027):
    """A run on an image folder (its decoded-image cache, the trial's kept weights), `report --out`, `export -o`
    with weights, `train --out`, a training checkpoint and a transfer source file: each comes out 0666 less the
    umask, as `>` in a shell would make it (mkstemp's 0600 would hide it from the group), and nothing half-written
    is left beside it."""
    import torch

    from hpsearch.training import transfer
    from hpsearch.training.checkpoint import Checkpoint, CheckpointFile
    from hpsearch.training.models import build_model
    from hpsearch.training.space import model_config

    image_folder(isolated / "data" / "pets", per_class=6)
    path = write_study(dataset={"name": "imagefolder", "path": "pets", "image_size": 8, "validation": 2, "test": 2},
                       budget={"epochs": 1, "trials": 1}, space={"lr": {"float": [0.01, 0.1]}},
                       fixed={"blocks": 1, "batch_size": 4})
    study = ["--study", str(path), "--storage", "sqlite:///x.db"]
    for args in (["run", *study, "--device", "cpu", "--keep-weights", "1"], ["report", *study, "--out", "report"],
                 ["export", *study, "-o", "best.yaml"], ["train", "--config", "best.yaml", "--out", "trained",
                                                         "--device", "cpu"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
    CheckpointFile(isolated / "checkpoints" / "trial-0.pt").save(Checkpoint(
        epoch=1, model={}, optimizer={}, generator=torch.zeros(1), cpu_rng=torch.get_rng_state(), cuda_rng=None,
        history=[]))
    params = {"blocks": 1, "convs_per_block": 1, "width": 4}
    transfer.save_checkpoint(isolated / "source.pt", build_model(model_config(params, (3, 8, 8), 2)), params,
                             (3, 8, 8))

    written = {p.relative_to(isolated).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in isolated.rglob("*")
               if p.is_file() and p.name not in ("study.yaml", "x.db") and "pets" not in p.parts
               and "locks" not in p.parts}
    kinds = {name.split("/")[0] if "/" in name else name for name in written}
    assert kinds >= {"data", "x-files", "report", "best.yaml", "best.safetensors", "trained", "checkpoints",
                     "source.pt"}, sorted(written)
    assert {name for name in written if name.startswith("report/")} >= {"report/report.md", "report/index.html",
                                                                         "report/pareto.png"}, sorted(written)
    assert {name: mode for name, mode in written.items() if mode != 0o640} == {}
    assert [name for name in written if name.endswith(".partial")] == []
