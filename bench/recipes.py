"""Speed-run recipes: how many points they add to a plain CNN at equal epochs, and each one's share.

One run trains, on a fixed subset of CIFAR-10 (the JPEG copy in ../shared/data), through the same
code path as `hpsearch train` (hpsearch.training.retrain.retrain, which trains exactly as a trial does):
  plain    a plain CNN the cifar10-75 space can express (PLAIN below), `--seeds` seeds;
  recipes  the same CNN and epochs with the recipes on (RECIPES below), the same seeds;
  minus X  `recipes` with one recipe turned back to its default, `--ablation-seeds` seeds each.
gain_points = 100 * (mean test accuracy of recipes - mean of plain). A recipe's share is the mean
of `recipes` minus the mean of `minus X` (same seeds first, so the comparison is paired).

The subset: the first `--train-images` + `--val-images` training images in the archive's official
order, the same number from each class, carved into train and validation by hpsearch's seeded
stratified split; the official 10,000 test images. It is made of links into the unpacked archive.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance, write_result  # noqa: E402

from hpsearch.results.export import TrialConfig  # noqa: E402
from hpsearch.studyfile.types import DatasetSpec  # noqa: E402
from hpsearch.training.retrain import retrain  # noqa: E402
from hpsearch.record import TrialRecord  # noqa: E402

# A plain CNN within the cifar10-75 space (every key is one of its axes or fixed values): three
# blocks of two 3x3 convs with BatchNorm, widths doubling, flips and crops, SGD Nesterov, cosine.
# Its width is this benchmark's one concession to a 2-core CPU (--width; the space allows 16-128).
PLAIN = {
    "blocks": 3, "convs_per_block": 2, "width_growth": 2.0, "kernel_size": 3, "batchnorm": True,
    "bn_momentum": 0.1, "conv_dropout": 0.0, "head_widths": [], "head_dropout": 0.0,
    "optimizer": "sgd_nesterov", "lr": 0.05, "weight_decay": 5e-4, "batch_size": 128, "schedule": "cosine",
    "augment": "flip_crop", "crop_padding": 4, "cutout_size": 12,
}
# The recipes the issue names for a CNN, each with the value airbench94 uses or its nearest here.
RECIPES = {
    "tta": {"tta": "flip_translate"},
    "ema": {"ema": 0.99},
    "whiten": {"whiten": 2},
    "label_smoothing": {"label_smoothing": 0.2},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--archive", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.xz",
                   help="the CIFAR-10 JPEG copy (train/<class>/, test/<class>/)")
    p.add_argument("--work", type=Path, default=Path("/tmp/hpsearch-recipes"),
                   help="where the archive is unpacked and the subset's links are made")
    p.add_argument("--train-images", type=int, default=10_000)
    p.add_argument("--val-images", type=int, default=1_000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--width", type=int, default=16, help="filters in the first block")
    p.add_argument("--seeds", type=int, default=3, help="seeds of plain and of recipes")
    p.add_argument("--ablation-seeds", type=int, default=1, help="seeds of each 'minus X' run")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--out", type=Path, required=True, help="write the result as JSON here")
    return p.parse_args()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_subset(archive: Path, work: Path, per_class: int) -> Path:
    """work/subset-N/cifar10/{train,test}/<class>/: links to the first `per_class` images of each class."""
    unpacked = work / "cifar10-jpeg"
    if not (unpacked / "test").is_dir():
        unpacked.mkdir(parents=True, exist_ok=True)
        log(f"unpacking {archive} into {unpacked}")
        subprocess.run(["tar", "xJf", str(archive), "-C", str(unpacked)], check=True)
    root = work / f"subset-{per_class}"
    folder = root / "cifar10"
    if not (folder / "test").exists():
        for class_dir in sorted((unpacked / "train").iterdir()):
            target = folder / "train" / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                (target / image.name).symlink_to(image)
        (folder / "test").symlink_to(unpacked / "test")
    return root


def run_one(label: str, params: dict, seed: int, dataset: DatasetSpec, data_dir: Path, epochs: int) -> dict:
    record = TrialRecord(params=params, dataset=dataset.recorded(), epochs=epochs, seed=seed)
    config = TrialConfig(record=record, dataset=dataset, metrics={}, versions={})
    load_before = load_average()
    started = time.perf_counter()
    run = retrain(config, seed, torch.device("cpu"), data_dir=data_dir)
    seconds = [s.seconds for s in run.history]
    result = {"label": label, "seed": seed, "val_accuracy": run.val_accuracy, "test_accuracy": run.test_accuracy,
              "seconds_per_epoch": statistics.fmean(seconds[1:] if len(seconds) > 1 else seconds),
              "first_epoch_seconds": seconds[0], "wall_seconds": round(time.perf_counter() - started, 2),
              "val_curve": [s.val_accuracy for s in run.history],
              "load_average_before": load_before, "load_average_after": load_average()}
    log(f"{label:>24} seed {seed}: test {run.test_accuracy:.4f}, {result['seconds_per_epoch']:.1f} s/epoch")
    return result


def summary(runs: list[dict]) -> dict:
    tests = [r["test_accuracy"] for r in runs]
    return {"n": len(tests), "test_accuracy_mean": statistics.fmean(tests),
            "test_accuracy_std": statistics.stdev(tests) if len(tests) > 1 else None,
            "seconds_per_epoch_mean": statistics.fmean(r["seconds_per_epoch"] for r in runs)}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    total = args.train_images + args.val_images
    if total % 10:
        sys.exit(f"--train-images + --val-images must be a multiple of 10 (one share per class), got {total}")
    data_dir = make_subset(args.archive, args.work, total // 10)
    dataset = DatasetSpec(name="cifar10", validation=args.val_images, split_seed=0, download=False)
    plain = {**PLAIN, "width": args.width}
    recipes = {**plain, **{k: v for recipe in RECIPES.values() for k, v in recipe.items()}}
    result = {"provenance": provenance(torch.device("cpu")),
              "data": {"dataset": "CIFAR-10 (JPEG copy)", "archive": str(args.archive), "train_images": args.train_images,
                       "val_images": args.val_images, "test_images": 10_000, "epochs": args.epochs},
              "configs": {"plain": plain, "recipes": recipes, "removed_in_ablation": RECIPES}, "runs": []}
    seeds = range(args.seeds)
    for seed in seeds:
        for label, params in (("plain", plain), ("recipes", recipes)):
            result["runs"].append(run_one(label, params, seed, dataset, data_dir, args.epochs))
    for name, recipe in RECIPES.items():
        without = {k: v for k, v in recipes.items() if k not in recipe}
        without.update({k: plain[k] for k in recipe if k in plain})  # back to the plain value, else the default
        for seed in range(args.ablation_seeds):
            result["runs"].append(run_one(f"minus {name}", without, seed, dataset, data_dir, args.epochs))
    by_label: dict[str, list[dict]] = {}
    for r in result["runs"]:
        by_label.setdefault(r["label"], []).append(r)
    result["summary"] = {label: summary(runs) for label, runs in by_label.items()}
    recipes_mean = result["summary"]["recipes"]["test_accuracy_mean"]
    result["gain_points"] = round(100 * (recipes_mean - result["summary"]["plain"]["test_accuracy_mean"]), 2)
    # Paired: the recipes' runs on the ablation's seeds against the ablation's runs.
    paired = statistics.fmean(r["test_accuracy"] for r in by_label["recipes"][:args.ablation_seeds])
    result["recipe_points"] = {name: round(100 * (paired - result["summary"][f"minus {name}"]["test_accuracy_mean"]), 2)
                               for name in RECIPES}
    result["provenance"]["load_average_end"] = load_average()
    write_result(args.out, result)
    print(f"gain_points {result['gain_points']:+.2f} (recipes {recipes_mean:.4f} vs plain "
          f"{result['summary']['plain']['test_accuracy_mean']:.4f}, {args.seeds} seeds, {args.epochs} epochs)")
    for name, points in result["recipe_points"].items():
        print(f"  {name:>16}: {points:+.2f} points (recipes minus the run without it)")


if __name__ == "__main__":
    main()
