"""Every CUDA path, on a real GPU: skipped without one; `bench/gpu_suite.py --stage check` runs them there.

With HPSEARCH_TEST_DEVICE=cpu (the suite's --dry-run) the same tests run on the CPU, so their logic is
checked between GPUs; what only CUDA does (bf16, channels_last, the memory cap) is then not asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.paths import slug
from hpsearch.search.objective import make_objective
from hpsearch.search.run import RunOptions, run
from hpsearch.search.studystore import open_study
from hpsearch.studyfile.schema import load_spec
from hpsearch.training import devicedata as data_module
from hpsearch.training import recipe

pytestmark = pytest.mark.cuda

# A retrained or resumed trial on CUDA may differ from the original: bf16 autocast and cuDNN's
# non-deterministic kernels (atomics in the weight gradients) round differently from run to run.
# On digits' 360 test / 216 validation images, 0.03 is 11 / 7 images; on the CPU the numbers are equal.
CUDA_TOLERANCE = 0.03
GOOD = {"blocks": 1, "convs_per_block": 1, "width": 16, "batch_size": 64, "optimizer": "sgd_nesterov", "lr": 0.05}
# Slow enough per epoch to be caught between two epochs, still seconds in all.
SLOW = {"blocks": 1, "convs_per_block": 2, "width": 32, "batch_size": 16, "batchnorm": False,
        "optimizer": "sgd_nesterov"}


@pytest.fixture
def device() -> torch.device:
    return torch.device(os.environ.get("HPSEARCH_TEST_DEVICE", "cuda"))


def device_flags(device: torch.device) -> list[str]:
    """`run`'s way to put its workers on this device: one per GPU slot, or CPU processes."""
    return ["--device", "cpu"] if device.type == "cpu" else ["--device", "cuda"]


def hpsearch(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hpsearch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_close(a: float, b: float, device: torch.device) -> None:
    if device.type == "cuda":
        assert abs(a - b) <= CUDA_TOLERANCE, (a, b)
    else:
        assert a == b


def test_a_trial_trains_and_evaluates_on_the_gpu(write_study, storage, device):
    spec = load_spec(write_study(budget={"epochs": 5, "trials": 1}, space={}, fixed=GOOD))
    study = run(spec, storage, RunOptions(device=device.type))
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("failure")
    assert trial.value > 0.9 and trial.user_attrs["test_accuracy"] > 0.9
    assert trial.user_attrs["epochs"] == 5 and len(trial.intermediate_values) == 5
    if device.type == "cuda":
        assert trial.user_attrs["device"] == torch.cuda.get_device_name(0)


def test_bf16_autocast_and_channels_last_are_really_on(image_folder, tmp_path, device):
    """What the first conv layer sees, in training and in evaluation: NHWC bf16 on CUDA, NCHW float32 on the CPU."""
    image_folder(tmp_path / "pictures", classes=("red", "green", "blue"), per_class=40)
    spec = load_spec(write_folder_study(tmp_path))
    data = data_module.load(spec.dataset, device)
    assert data.train_x.device.type == device.type and data.train_x.shape[1] == 3
    params = {**GOOD, "blocks": 2, "augment": "flip_crop_cutout", "crop_padding": 2, "cutout_size": 4}
    seen, convs = [], []

    def watch_first_conv(model):
        convs.append(next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)))
        convs[0].register_forward_hook(lambda module, inputs, output: seen.append(
            (module.training, inputs[0].is_contiguous(memory_format=torch.channels_last), output.dtype)))

    recipe.train(params, data, epochs=1, seed=0, on_built=watch_first_conv)
    (first_conv,) = convs
    on_cuda = device.type == "cuda"
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last) == on_cuda
    assert first_conv.weight.dtype == torch.float32  # the master weights stay float32 under autocast
    for training in (True, False):
        layouts = {(nhwc, dtype) for mode, nhwc, dtype in seen if mode == training}
        assert layouts == {(on_cuda, torch.bfloat16 if on_cuda else torch.float32)}, (training, layouts)


def write_folder_study(tmp_path):
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump({
        "name": "colours", "dataset": {"name": "imagefolder", "path": str(tmp_path / "pictures"), "image_size": 16,
                                       "validation": 0.2, "test": 0.2},
        "budget": {"epochs": 1, "trials": 1}, "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
        "fixed": GOOD}))
    return path


def test_a_killed_trial_resumes_on_the_gpu_from_its_checkpoint_at_the_right_epoch(write_study, tmp_path, device):
    storage = f"sqlite:///{tmp_path / 'crash.db'}"
    epochs = 12 if device.type == "cuda" else 4  # the kill must land before the last epoch: GPU epochs are short
    path = write_study(budget={"epochs": epochs, "trials": 2}, fixed=SLOW,
                       space={"lr": {"float": [0.01, 0.1], "log": True}})
    worker = hpsearch("worker", "--study", str(path), "--storage", storage, *device_flags(device), "--until", "2",
                      "--heartbeat", "1")
    checkpoint = tmp_path / "crash-files" / "checkpoints" / slug("tiny-digits") / "trial-0.pt"
    wait_for(lambda: checkpoint.is_file() and _epochs_saved(checkpoint) >= 2, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    saved = torch.load(checkpoint, weights_only=True)  # what the dead worker left: the last whole epoch
    assert (saved["cuda_rng"] is not None) == (device.type == "cuda")

    study = run(load_spec(path), storage, RunOptions(device=device.type, until=2, heartbeat=1))
    first = study.trials[0]
    (retried,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert first.state == TrialState.FAIL
    assert retried.state == TrialState.COMPLETE and retried.params == first.params
    assert retried.user_attrs["resumed_from_epoch"] == saved["epoch"]
    assert sorted(retried.intermediate_values) == list(range(1, epochs + 1))
    assert not checkpoint.exists()

    clean = run(load_spec(path), f"sqlite:///{tmp_path / 'clean.db'}", RunOptions(device=device.type, n_trials=1))
    assert clean.trials[0].params == first.params
    assert_close(clean.trials[0].value, retried.value, device)


def _epochs_saved(checkpoint) -> int:
    try:
        return torch.load(checkpoint, weights_only=True)["epoch"]
    except (OSError, RuntimeError, EOFError):  # replaced while we read it
        return 0


def wait_for(condition, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_a_batch_that_cannot_fit_fails_its_trial_frees_the_memory_and_the_next_trial_runs(write_study, storage,
                                                                                          device):
    if device.type != "cuda":
        pytest.skip("the CPU has no per-process memory cap to run into")
    spec = load_spec(write_study(budget={"epochs": 2, "trials": 2}, space={
        "width": {"choice": [8, 1024]}, "batch_size": {"choice": [32, 1024]}},
        fixed={"blocks": 2, "convs_per_block": 2, "optimizer": "sgd_nesterov", "lr": 0.05}))
    study = open_study(spec, storage)
    study.enqueue_trial({"width": 1024, "batch_size": 1024})  # ~2 GiB of activations: over the cap
    study.enqueue_trial({"width": 8, "batch_size": 32})
    allocated = []
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    cap = 512 * 2**20  # bytes this process may hold on the GPU during the run
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0).total_memory)
    try:
        study = run(spec, storage, RunOptions(device="cuda", n_trials=2),
                    callbacks=[lambda study, trial: allocated.append(torch.cuda.memory_allocated())])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    oom, small = study.trials
    assert oom.state == TrialState.FAIL and "CUDA out of memory" in oom.user_attrs["failure"]
    assert "batch_size 1024" in oom.user_attrs["failure"]
    assert allocated[0] - before < 16 * 2**20  # the failed trial's model, gradients and activations are gone
    assert small.state == TrialState.COMPLETE and small.params == {"width": 8, "batch_size": 32}


def test_a_nan_loss_is_recorded_as_the_trial_s_failure(write_study, storage, device):
    spec = load_spec(write_study(budget={"epochs": 2, "trials": 1}, space={},
                                 fixed={**GOOD, "batchnorm": False, "optimizer": "sgd", "momentum": 0.0,
                                        "lr": 100.0}))
    (trial,) = run(spec, storage, RunOptions(device=device.type)).trials
    assert trial.state == TrialState.FAIL
    assert "training loss became" in trial.user_attrs["failure"]


def test_the_pace_probe_times_the_gpu_s_steps_and_stops_a_trial_that_cannot_fit(write_study, device):
    """The probe synchronises before it reads the clock: CUDA queues steps ahead of the host."""
    spec = load_spec(write_study(budget={"epochs": 2000, "trials": 1}, space={}, fixed=GOOD))
    study = optuna.create_study(direction="maximize")
    study.optimize(make_objective(spec, data_module.load(spec.dataset, device), time_left=lambda: 1.0), n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 0
    assert trial.user_attrs["stopped"].endswith("its run has left: stopped after its first steps")
    assert trial.user_attrs["cost"]["step_seconds"] > 0 and trial.user_attrs["cost"]["probed_seconds"] > 1.0


def test_two_workers_share_one_gpu_to_an_exact_total(write_study, storage, device):
    path = write_study(budget={"epochs": 2, "trials": 50})
    placement = ["--gpus", "0", "--trials-per-gpu", "2"] if device.type == "cuda" else ["--device", "cpu",
                                                                                        "--workers", "2"]
    process = hpsearch("run", "--study", str(path), "--storage", storage, "--n-trials", "4", *placement)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert ("2 workers on GPUs 0" if device.type == "cuda" else "2 workers on cpu") in err
    trials = optuna.load_study(study_name="tiny-digits", storage=storage).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials), \
        [t.user_attrs.get("failure") for t in trials]
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert {t.user_attrs["device"] for t in trials} == {trials[0].user_attrs["device"]}


def test_export_then_train_on_the_gpu_gives_the_trial_s_accuracies(write_study, storage, tmp_path, device):
    path = write_study(budget={"epochs": 5, "trials": 1}, space={}, fixed=GOOD)
    (trial,) = run(load_spec(path), storage, RunOptions(device=device.type)).trials
    runner = CliRunner()
    result = runner.invoke(main, ["export", "--study", str(path), "--storage", storage, "-o", "best.yaml"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["train", "--config", "best.yaml", "--device", device.type, "--out", "again"])
    assert result.exit_code == 0, result.output
    (retrained,) = json.loads((tmp_path / "again" / "results.json").read_text())["seeds"]
    assert_close(retrained["val_accuracy"], trial.value, device)
    assert_close(retrained["test_accuracy"], trial.user_attrs["test_accuracy"], device)
