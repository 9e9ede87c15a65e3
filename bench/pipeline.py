"""Input pipeline: hpsearch's device-resident data against the usual torchvision DataLoader.

One model, one training recipe, two ways of feeding it, in one run:
  usual     uint8 images held in memory (as torchvision's CIFAR10/FashionMNIST hold them), per-image
            transforms.v2 RandomCrop(padding) + RandomHorizontalFlip + ToDtype + Normalize, a DataLoader
            with os.cpu_count() persistent workers (pin_memory and non_blocking copies on CUDA);
  hpsearch  hpsearch.training.devicedata.load (the splits as uint8 on the device) + hpsearch.training.recipe.train (one
            permutation and one batched augmentation per epoch, normalised per batch).
Both train the same initial weights on the same 90% training split with the same optimizer, per-step
learning-rate schedule, batch size, threads and autocast (bf16 on CUDA, float32 on the CPU), and both
evaluate the same validation split after every epoch; an epoch's time includes that evaluation.
The first epoch (worker start-up, allocator and kernel warm-up) is reported apart from the mean of the
later ones ("steady"). Speed-up = usual steady seconds per epoch / hpsearch steady seconds per epoch.

Measured 2026-11-23 on a shared 2-core AMD EPYC (load average 6-10 from other jobs), Fashion-MNIST,
seed003-tutorial, 3 epochs, three runs: speed-up 2.75x and 3.31x with 2 torch threads, 3.50x with 1;
test accuracy within 0.8 points. Tables in bench/README.md, every figure with its device, versions,
load average and command line in bench/results/*.json.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance, write_result  # noqa: E402

from hpsearch.search.preflight import known_input
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.types import DatasetSpec  # noqa: E402
from hpsearch.training import devicedata as hdata
from hpsearch.training import recipe  # noqa: E402
from hpsearch.training.datasets import READERS  # noqa: E402
from hpsearch.training.models import build_model, count_parameters  # noqa: E402
from hpsearch.training.space import (  # noqa: E402
    fit_problem,  # noqa: E402
    model_config,
    train_config,
)
from hpsearch.training.train import EVAL_BATCH, evaluate, lr_factor, make_optimizer, prepare  # noqa: E402

# The training recipe, fixed: hpsearch's defaults plus random crops and flips. The network is a
# baseline's (--model), so the figures name a model the project already knows.
RECIPE = {
    "optimizer": "sgd_nesterov", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
    "label_smoothing": 0.0, "batch_size": 128, "augment": "flip_crop",
}
DEFAULT_MODEL = "seed003-tutorial"  # LeNet-5-like, 44k parameters on 28x28: an epoch fits a 2-core CPU
CROP_PADDING = {"fashion-mnist": 2, "cifar10": 4}  # pixels; 2 is the fashion-mnist-93 study's choice
SEED = 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(CROP_PADDING), default="fashion-mnist")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--model", choices=sorted(BASELINES), default=DEFAULT_MODEL,
                   help="the network: a baseline's layers, trained with this benchmark's fixed recipe")
    p.add_argument("--epochs", type=int, default=3, help="epochs per pipeline; the first is reported apart")
    p.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder of the datasets (default: $HPSEARCH_DATA_DIR or ./data; fashion-mnist also "
                        "falls back to /usr/share/datasets/fashion-mnist)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers of the usual pipeline")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads, both pipelines")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = p.parse_args()
    if args.epochs < 2:
        p.error(f"--epochs must be at least 2 (the first is warm-up), got {args.epochs}")
    problem = fit_problem(BASELINES[args.model], *known_input(DatasetSpec(args.dataset)))
    if problem is not None:
        p.error(f"--model {args.model} does not fit {args.dataset}: {problem}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch")
    return args


class Clock:
    """Wall time in seconds; on CUDA it waits for queued GPU work first, so a reading ends the work."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The usual pipeline: a map-style Dataset of in-memory uint8 images, per-image v2 transforms, workers.


class UInt8Images(Dataset):
    """uint8 (C, H, W) images and int labels held in memory, transformed one image at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), int(self.y[i])


def fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 (16 hex digits) of a split's images and labels: both pipelines must train on the same."""
    h = hashlib.sha256(x.cpu().contiguous().numpy().tobytes())
    h.update(y.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def split_indices(y: torch.Tensor, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: the same seeded, stratified carve-out hpsearch.training.devicedata makes."""
    kept, carved = train_test_split(np.arange(len(y)), test_size=spec.validation, random_state=spec.split_seed,
                                    stratify=y.numpy())
    return np.sort(kept), np.sort(carved)


def run_usual(spec: DatasetSpec, data_dir: Path, params: dict, epochs: int, device: torch.device,
              workers: int, clock: Clock) -> dict:
    started = clock()
    images = READERS[spec.name](spec, data_dir)  # decoded once, uint8 (N, C, H, W)
    train_idx, val_idx = split_indices(images.train_y, spec)
    train_x, train_y = images.train_x[train_idx], images.train_y[train_idx]
    pixels = train_x.float().div_(255.0)
    mean, std = pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).tolist()
    del pixels
    height = train_x.shape[2]
    normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train_tf = v2.Compose([v2.RandomCrop(height, padding=params["crop_padding"]), v2.RandomHorizontalFlip(),
                           *normalize])
    eval_tf = v2.Compose(normalize)
    cfg = train_config(params, epochs=epochs, seed=SEED)
    cuda = device.type == "cuda"

    def loader(x, y, transform, batch, train):
        return DataLoader(UInt8Images(x, y, transform), batch_size=batch, shuffle=train, drop_last=train,
                          num_workers=workers, persistent_workers=workers > 0, pin_memory=cuda,
                          generator=torch.Generator().manual_seed(SEED))

    train_loader = loader(train_x, train_y, train_tf, cfg.batch_size, True)
    val_loader = loader(images.train_x[val_idx], images.train_y[val_idx], eval_tf, EVAL_BATCH, False)
    test_loader = loader(images.test_x, images.test_y, eval_tf, EVAL_BATCH, False)
    torch.manual_seed(SEED)
    model = prepare(build_model(model_config(params, tuple(train_x.shape[1:]), len(images.classes))), device)
    optimizer = make_optimizer(model, cfg)
    total_steps = len(train_loader) * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg.schedule, step, total_steps, cfg.warmup_fraction))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
    memory_format = torch.channels_last if cuda else torch.contiguous_format

    def accuracy(batches) -> float:
        model.eval()
        correct = seen = 0
        with torch.inference_mode():
            for x, y in batches:
                x = x.to(device, non_blocking=True, memory_format=memory_format)
                y = y.to(device, non_blocking=True)
                with autocast:
                    correct += (model(x).argmax(dim=1) == y).sum()
                seen += len(y)
        return int(correct) / seen

    setup_s = clock() - started
    log(f"usual: {len(train_y)} training images, {workers} workers, setup {setup_s:.1f} s")
    load_before, epoch_s, losses, val_acc = load_average(), [], [], []
    for epoch in range(1, epochs + 1):
        t0 = clock()
        model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y in train_loader:
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach().float()
        losses.append((loss_sum / len(train_loader)).item())
        val_acc.append(accuracy(val_loader))
        epoch_s.append(clock() - t0)
        log(f"usual    epoch {epoch}: {epoch_s[-1]:6.1f} s  loss {losses[-1]:.4f}  val {val_acc[-1]:.4f}")
    load_after = load_average()
    test_acc = accuracy(test_loader)
    del train_loader, val_loader, test_loader  # ends the workers before the other pipeline runs
    return {**figures("usual", setup_s, epoch_s, trained_images(len(train_y), cfg.batch_size), losses, val_acc,
                      test_acc, load_before, load_after, count_parameters(model)),
            "data_source": images.source, "train_split": fingerprint(train_x, train_y)}


def trained_images(n: int, batch: int) -> int:
    """The images one epoch trains on: whole batches only, in both pipelines."""
    return (n // batch) * batch


# --------------------------------------------------------------------------------------------
# hpsearch: the splits on the device, recipe.train as a trial runs it.


def run_hpsearch(spec: DatasetSpec, data_dir: Path, params: dict, epochs: int, device: torch.device,
                 clock: Clock) -> dict:
    started = clock()
    hdata._LOADED.clear()  # read from disk here, not from an earlier call's cache
    data = hdata.load(spec, device, data_dir)
    cfg = train_config(params, epochs=epochs, seed=SEED)
    setup_s = clock() - started  # building the model is in the first epoch's time (recipe.train)
    log(f"hpsearch: {len(data.train_y)} training images on {device}, setup {setup_s:.1f} s")
    load_before, marks, history = load_average(), [clock()], []

    def on_epoch(stats):
        marks.append(clock())
        history.append(stats)
        log(f"hpsearch epoch {stats.epoch}: {marks[-1] - marks[-2]:6.1f} s  loss {stats.train_loss:.4f}  "
            f"val {stats.val_accuracy:.4f}")

    trained = recipe.train(params, data, epochs=epochs, seed=SEED, on_epoch=on_epoch)
    load_after = load_average()
    test_acc = trained.test_accuracy
    epoch_s = [b - a for a, b in zip(marks, marks[1:])]
    return {**figures("hpsearch", setup_s, epoch_s, trained_images(len(data.train_y), cfg.batch_size),
                      [h.train_loss for h in history], [h.val_accuracy for h in history], test_acc,
                      load_before, load_after, count_parameters(trained.model)),
            "data_source": data.source, "train_split": fingerprint(data.train_x, data.train_y)}


def figures(name, setup_s, epoch_s, images_per_epoch, losses, val_acc, test_acc, load_before, load_after,
            parameters) -> dict:
    steady = sum(epoch_s[1:]) / len(epoch_s[1:])
    return {
        "pipeline": name,
        "setup_s": round(setup_s, 3),
        "epoch_s": [round(s, 3) for s in epoch_s],
        "first_epoch_s": round(epoch_s[0], 3),
        "steady_epoch_s": round(steady, 3),  # mean of epochs 2..E
        "images_per_epoch": images_per_epoch,
        "steady_images_per_s": round(images_per_epoch / steady, 1),
        "train_loss": [round(v, 5) for v in losses],
        "val_accuracy": val_acc,
        "test_accuracy": test_acc,
        "parameters": parameters,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


# --------------------------------------------------------------------------------------------
# Each part alone, after both runs: where an epoch's time goes.


def breakdown(spec: DatasetSpec, data_dir: Path, params: dict, device: torch.device, workers: int,
              clock: Clock, steps: int = 60, warmup_steps: int = 5) -> dict:
    """Seconds per epoch of: the usual loader with no model; hpsearch's permute + augment + normalise;
    the train steps alone on ready batches (extrapolated from `steps`); one validation pass."""
    data = hdata.load(spec, device, data_dir)
    cfg = train_config(params, epochs=1, seed=SEED)
    batch, n = cfg.batch_size, len(data.train_y)
    steps_per_epoch = n // batch
    steps = min(steps, steps_per_epoch)  # never time more steps than an epoch has
    out = {}

    images = READERS[spec.name](spec, data_dir)
    train_idx, _ = split_indices(images.train_y, spec)
    mean, std = data.mean.flatten().tolist(), data.std.flatten().tolist()
    tf = v2.Compose([v2.RandomCrop(images.train_x.shape[2], padding=params["crop_padding"]),
                     v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    loader = DataLoader(UInt8Images(images.train_x[train_idx], images.train_y[train_idx], tf), batch_size=batch,
                        shuffle=True, drop_last=True, num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(SEED))
    batches, warm = iter(loader), min(5, steps_per_epoch - 1)  # the first batches wait for the workers to start
    for _ in range(warm):
        next(batches)
    t0 = clock()
    for x, y in batches:
        x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    out["usual_loader_alone_s"] = round((clock() - t0) * steps_per_epoch / (steps_per_epoch - warm), 3)
    del batches, loader

    generator = torch.Generator(device=device).manual_seed(SEED)
    t0 = clock()
    order = torch.randperm(n, device=device, generator=generator)
    x_epoch = cfg.augment(data.train_x[order], generator)
    for i in range(steps_per_epoch):
        data.normalize(x_epoch[i * batch:(i + 1) * batch])
    out["hpsearch_data_path_s"] = round(clock() - t0, 3)

    torch.manual_seed(SEED)
    model = prepare(build_model(model_config(params, data.shape, data.num_classes)), device)
    optimizer = make_optimizer(model, cfg)
    xb, yb = data.normalize(x_epoch[:batch]), data.train_y[order[:batch]]
    model.train()
    for i in range(warmup_steps + steps):
        if i == warmup_steps:
            t0 = clock()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    out["train_steps_alone_s"] = round((clock() - t0) / steps * steps_per_epoch, 3)
    evaluate(model, data, data.val_x, data.val_y)
    t0 = clock()
    evaluate(model, data, data.val_x, data.val_y)
    out["validation_pass_s"] = round(clock() - t0, 3)
    return out


# --------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = Clock(device)
    data_dir = (args.data_dir or hdata.default_data_dir()).expanduser()
    spec = DatasetSpec(args.dataset, download=False)
    params = {**BASELINES[args.model].params, **RECIPE, "batch_size": args.batch_size,
              "crop_padding": CROP_PADDING[args.dataset]}
    shape, classes = known_input(spec)
    result = {
        **provenance(device),
        "benchmark": "pipeline",
        "dataset": args.dataset,
        "dataset_spec": {"validation": spec.validation, "split_seed": spec.split_seed, "data_dir": str(data_dir)},
        "epochs": args.epochs,
        "workers": args.workers,
        "seed": SEED,
        "model": args.model,
        "params": params,
        "model_config": repr(model_config(params, shape, classes)),
        "train_config": repr(train_config(params, epochs=args.epochs, seed=SEED)),
        "eval_batch": EVAL_BATCH,
    }
    usual = run_usual(spec, data_dir, copy.deepcopy(params), args.epochs, device, args.workers, clock)
    ours = run_hpsearch(spec, data_dir, copy.deepcopy(params), args.epochs, device, clock)
    if usual["train_split"] != ours["train_split"]:
        raise SystemExit(f"the pipelines trained on different splits ({usual['train_split']} vs "
                         f"{ours['train_split']}): the comparison is void")
    result["pipelines"] = {"usual": usual, "hpsearch": ours}
    result["speedup_steady"] = round(usual["steady_epoch_s"] / ours["steady_epoch_s"], 3)
    result["speedup_first_epoch"] = round(usual["first_epoch_s"] / ours["first_epoch_s"], 3)
    result["test_accuracy_difference"] = round(ours["test_accuracy"] - usual["test_accuracy"], 4)
    result["breakdown"] = breakdown(spec, data_dir, params, device, args.workers, clock)
    result["load_average_end"] = load_average()

    print(table(result))
    if args.out is not None:
        write_result(args.out, result)
        log(f"wrote {args.out}")


def table(r: dict) -> str:
    rows = [f"{r['model']} on {r['dataset']}, {r['device']} ({r['cpu_cores']} cores), torch threads {r['torch_threads']}, "
            f"workers {r['workers']}, "
            f"batch {r['params']['batch_size']}, {r['epochs']} epochs, {r['date']}",
            f"{'pipeline':<9} {'1st epoch s':>11} {'steady s/ep':>11} {'images/s':>9} {'val acc':>8} "
            f"{'test acc':>8}  load avg before -> after"]
    for p in r["pipelines"].values():
        rows.append(f"{p['pipeline']:<9} {p['first_epoch_s']:>11.2f} {p['steady_epoch_s']:>11.2f} "
                    f"{p['steady_images_per_s']:>9.0f} {p['val_accuracy'][-1]:>8.4f} {p['test_accuracy']:>8.4f}  "
                    f"{p['load_average_before'][0] if p['load_average_before'] else '?'} -> "
                    f"{p['load_average_after'][0] if p['load_average_after'] else '?'}")
    rows.append(f"speed-up (usual / hpsearch seconds per epoch): steady {r['speedup_steady']:.2f}x, "
                f"first epoch {r['speedup_first_epoch']:.2f}x; test accuracy difference "
                f"{100 * r['test_accuracy_difference']:+.2f} points")
    for k, v in r.get("breakdown", {}).items():
        rows.append(f"  {k:<22} {v:8.2f} s per epoch")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
