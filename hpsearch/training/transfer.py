"""Trials that start from a trained model: where its weights come from, what is kept, re-initialised, frozen.

A trial's model is built for the new data as usual, so its output layer (the last Linear or Conv2d
in module order) is new and sized for the new classes (one logit for a sigmoid output). Every
other layer takes the source model's weights, except the first `reinit_convs` conv layers, which
keep their fresh initialisation. The next `freeze_convs` conv layers are frozen, and with
`freeze_hidden` the hidden fully connected layers too. "Conv layer k" is the k-th Conv2d in
module order, the output layer excluded, together with the BatchNorm right after it. Reused
layers that train get reused_lr_ratio x lr (train.make_optimizer); new ones get lr. A frozen
layer's BatchNorm running statistics still follow the new data, as they do in any training step.

The architecture must be the source's for its weights to fit: a source that carries its config
(a trial of another study, or a file written by save_checkpoint) imposes it on every trial
(space.sample); a plain state dict (torchvision's ImageNet weights, say) fits the study's own.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hpsearch import record
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.files import write_atomic
from hpsearch.record import Init
from hpsearch.results import sources
from hpsearch.results.artifacts import UnreadableWeights, load_state_dict_file
from hpsearch.results.export import params_problems, weights_record
from hpsearch.studyfile import params as P
from hpsearch.training import torchfile
from hpsearch.training.models import ArchitectureError, build_model
from hpsearch.training.space import model_config

if TYPE_CHECKING:
    from hpsearch.studyfile.types import InitSpec, StudySpec
    from hpsearch.training.devicedata import DeviceData


class TransferError(ArchitectureError):
    """Trained weights that do not fit a trial's model: the trial fails with this as its reason."""


@dataclass(frozen=True)
class Source:
    """A trained model to start from."""

    state_dict: Mapping[str, torch.Tensor]
    config: Mapping[str, Any] | None  # the params that built it; None for a plain state dict
    input_shape: tuple[int, int, int] | None  # (C, H, W) it was trained on, where known
    init: Init  # where it is; a study's storage None where it is the run's own

    @property
    def origin(self) -> str:
        """What it is, for messages and each trial's `init` user attribute."""
        return self.init.origin


def save_checkpoint(path: str | Path, model: nn.Module, config: Mapping[str, Any],
                    input_shape: tuple[int, int, int]) -> None:
    """A weights file that says what it is: `init: {weights: path}` rebuilds the model from it. Written whole or
    not at all (files.CannotWrite)."""
    buffer = io.BytesIO()
    torch.save({"config": dict(config), "input_shape": list(input_shape),
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, buffer)
    write_atomic(Path(path), buffer.getvalue())


def load_source(init: InitSpec | Init, storage_url: str | None) -> Source:
    """The weights `init` names, read once per run; HpsearchError with the fix where they are not there.

    `init` is a study file's, its storage as the user wrote it, or a recorded Init (an exported config's, a stored
    trial's), its storage masked (see results/sources.source_url). `storage_url` is this command's storage (None: as
    --storage defaults), where a source study is found when `init` names no other. A recorded Init's sha256 must
    match the file's: other weights would train another model.
    """
    if init.weights is None:
        url = sources.source_url(init, storage_url) if isinstance(init, Init) else init.storage or storage_url
        return _from_study(init.study, init.trial, url, init.storage)
    source = _from_file(Path(init.weights))
    if getattr(init, "sha256", None) not in (None, source.init.sha256):
        raise HpsearchError(f"init.weights: {init.weights} is not the file the trial started from "
                            f"(sha256 {source.init.sha256[:12]}…, recorded {init.sha256[:12]}…)")
    return source


def _from_file(path: Path) -> Source:
    if not path.is_file():
        raise HpsearchError(f"init.weights: no file {path}; hpsearch never downloads weights: copy the file there "
                            "(torchvision keeps the ones it downloaded in ~/.cache/torch/hub/checkpoints/)")
    init = Init(weights=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    if path.suffix == ".safetensors":  # hpsearch's own: its header holds the record that rebuilds the model
        try:
            recipe = weights_record(path)
            state_dict = load_state_dict_file(path)
        except UnreadableWeights as exc:
            raise HpsearchError(f"init.weights: {exc}") from None
        return Source(state_dict, recipe and recipe.params, recipe and recipe.input_shape, init)
    try:
        loaded = torchfile.load(path)
    except torchfile.UnreadableFile as exc:
        raise HpsearchError(f"init.weights: {path} is not a weights file torch can load safely "
                            f"({exc.reason})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict) and loaded["state_dict"]:
        # written by save_checkpoint
        shape = loaded.get("input_shape")
        if problems := params_problems(loaded.get("config") or {}):
            raise SpecError(f"init.weights: {path}", [f"config: {p}" for p in problems])
        return Source(loaded["state_dict"], loaded.get("config"), tuple(shape) if shape else None, init)
    if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return Source(loaded, None, None, init)
    raise HpsearchError(f"init.weights: {path} holds neither a state dict nor a checkpoint written by hpsearch")


def _from_study(name: str, trial: int | str, url: str, recorded: str | None) -> Source:
    """The weights stored for a trial of study `name` in the storage at `url`, and its config; `recorded` is the
    storage its Init records (None: the run's own)."""
    frozen, state_dict = sources.stored_trial(name, trial, url)
    return Source(state_dict, record.config(frozen), record.input_shape(frozen),
                  Init(study=name, trial=frozen.number, storage=recorded))


def check_source(spec: StudySpec, data: DeviceData, source: Source) -> None:
    """Refuse, before any trial, a source whose weights cannot fit the study's model."""
    searched = sorted(name for name in spec.space.keys() | spec.fixed.keys() if P.is_architecture(name))
    if source.config is not None and searched:
        raise HpsearchError(f"{spec.path}: init: {source.origin} carries its model's config, so the architecture "
                            f"comes from it: remove {', '.join(searched)} from space and fixed")
    if source.config is None and set(searched) & spec.space.keys():
        return  # the architecture varies by trial: each trial checks its own
    params = P.with_architecture(spec.fixed, source.config)
    with torch.device("meta"):  # shapes only: checking a 26M-parameter net costs nothing
        model = build_model(model_config(params, data.shape, data.num_classes))
    if why := _aligned(model, source, data.shape)[1]:
        raise HpsearchError(f"{spec.path}: init: {why}")


def apply(model: nn.Module, source: Source, params: Mapping[str, Any],
          input_shape: tuple[int, int, int]) -> frozenset[str]:
    """Load the source's weights into `model` (built for `input_shape`) as `params` say, and freeze
    layers; returns the names of the reused parameters that train."""
    weights, why = _aligned(model, source, input_shape)
    if why:
        raise TransferError(why)
    units, head, hidden = _layers(model)
    reinit, freeze = params.get("reinit_convs", 0), params.get("freeze_convs", 0)
    if reinit + freeze > len(units):
        raise TransferError(f"reinit_convs {reinit} + freeze_convs {freeze} exceed the model's {len(units)} conv layers")
    new = {head, *(name for unit in units[:reinit] for name in unit)}
    frozen = {name for unit in units[reinit:reinit + freeze] for name in unit}
    if params.get("freeze_hidden"):
        frozen |= set(hidden)
    model.load_state_dict({k: v for k, v in weights.items() if _module(k) not in new}, strict=False)
    modules = dict(model.named_modules())
    for name in frozen:
        modules[name].requires_grad_(False)
    return frozenset(k for k, p in model.named_parameters() if _module(k) not in new and p.requires_grad)


def _aligned(model: nn.Module, source: Source,
             input_shape: tuple[int, int, int]) -> tuple[dict[str, torch.Tensor], str | None]:
    """The source's tensors under this model's state-dict keys, output layers aside; or why they do not fit.

    Tensors are matched in order, not by name: the CNN is an nn.Sequential whose indices shift with
    parameterless layers such as dropout, which a transfer trial may add or drop.
    """
    head, source_head = _layers(model)[1], _module(next(reversed(source.state_dict)))  # the source's: its last layer
    want = [(k, v) for k, v in model.state_dict().items() if _module(k) != head]
    have = [(k, v) for k, v in source.state_dict.items() if _module(k) != source_head]
    hint = ""
    if source.input_shape is not None and tuple(source.input_shape) != tuple(input_shape):
        hint = (f"; the source was trained on {'x'.join(map(str, source.input_shape))} images, this data is "
                f"{'x'.join(map(str, input_shape))} (dataset.image_size)")
    if len(want) != len(have):
        return {}, (f"{source.origin} holds {len(have)} tensors besides its output layer, this model "
                    f"{len(want)}: not the same architecture{hint}")
    for (key, mine), (theirs_key, theirs) in zip(want, have):
        if key.rpartition(".")[2] != theirs_key.rpartition(".")[2] or mine.shape != theirs.shape:
            return {}, (f"{theirs_key} {list(theirs.shape)} in {source.origin} does not fit {key} "
                        f"{list(mine.shape)} of this model{hint}")
    return {key: theirs for (key, _), (_, theirs) in zip(want, have)}, None


def _layers(model: nn.Module) -> tuple[list[tuple[str, ...]], str, list[str]]:
    """(conv units: each conv's name with its BatchNorm's, the output layer's name, hidden Linear names)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    head = next(n for n, m in reversed(layers) if not isinstance(m, nn.BatchNorm2d))
    units = []
    for i, (name, module) in enumerate(layers):
        if isinstance(module, nn.Conv2d) and name != head:
            follows = layers[i + 1] if i + 1 < len(layers) else None
            units.append((name, follows[0]) if follows and isinstance(follows[1], nn.BatchNorm2d) else (name,))
    hidden = [n for n, m in layers if isinstance(m, nn.Linear) and n != head]
    return units, head, hidden


def _module(key: str) -> str:
    """The module a state-dict key belongs to: '3.weight' -> '3', 'layer1.0.bn1.running_mean' -> 'layer1.0.bn1'."""
    return key.rpartition(".")[0]
