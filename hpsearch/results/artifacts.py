"""Trained weights of a study's best trials, kept as Optuna artifacts beside the storage.

Where: for `sqlite:///path/x.db` the folder `path/x-files/artifacts/`; for any other storage URL
`$HPSEARCH_ARTIFACTS`, else `./hpsearch-files/artifacts` (every machine sharing a PostgreSQL study must
see the same folder, e.g. a network mount, or each keeps only the weights it trained).

What: one safetensors file per kept trial, uploaded while the trial is still running (Optuna
refuses attributes on a finished trial), its artifact id in the trial's `weights_artifact` user
attribute. safetensors rather than a pickled state dict: loading it runs no code, so weights from
a shared folder are safe to open, and its header carries the trial's parameters as text.

How many: the best `keep` completed trials within the study's limits by validation accuracy (baselines
included), ranked as ranking.py ranks them. A trial
that drops out of the top `keep` has its file removed, so disk use stays bounded; its artifact
entry stays listed in the dashboard (a finished trial's attributes cannot change), and downloading
it there answers "not found".
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial
from safetensors import SafetensorError, safe_open

from hpsearch import record
from hpsearch.defaults import DEFAULT_KEEP
from hpsearch.errors import HpsearchError
from hpsearch.files import CannotWrite, check_writable, save_atomic, write_atomic
from hpsearch.record import TrialRecord
from hpsearch.results import ranking
from hpsearch.results.trials import NewlyFinished
from hpsearch.storage import folder_beside, mask, open_existing, sqlite_file

if TYPE_CHECKING:
    import torch


def artifact_dir(storage_url: str) -> Path:
    """The folder of the artifact store that belongs to this storage (see the module docstring)."""
    return folder_beside(storage_url, "artifacts", "HPSEARCH_ARTIFACTS")


class WeightKeeper:
    """The objective's on_complete hook: keep this trial's weights if it is among the best `keep`. Each finished
    trial is looked at once for weights (NewlyFinished); the files of those that hold some, at each trial."""

    def __init__(self, storage_url: str, keep: int = DEFAULT_KEEP):
        self.folder = artifact_dir(storage_url)
        self.store = WholeFileStore(self.folder)
        self.keep = keep
        self.newly_finished = NewlyFinished()
        self.holders: dict[int, FrozenTrial] = {}  # the finished trials whose weights were kept, by number
        elsewhere = "" if sqlite_file(storage_url) else "set $HPSEARCH_ARTIFACTS to another folder, "
        check_writable(self.folder, "the artifact folder",  # now, not after the first trial trained
                       f"{elsewhere}keep no weights (--keep-weights 0)")

    def __call__(self, trial: optuna.Trial, model: torch.nn.Module, recipe: TrialRecord) -> None:
        value = record.outcome(trial).val_accuracy  # the objective's return value, not yet stored
        self.holders.update((t.number, t) for t in self.newly_finished(trial.study.get_trials(deepcopy=False))
                            if record.weights_artifact(t) is not None)
        # A file dropped, by this worker or another, is gone for good.
        self.holders = {n: t for n, t in self.holders.items() if self._exists(record.weights_artifact(t))}
        kept = [(ranking.val_accuracy(t), t.number, record.weights_artifact(t))
                for t in ranking.ranked(self.holders.values())]
        ranked = sorted([*kept, (value, trial.number, None)], key=lambda r: (-r[0], r[1]))
        if (value, trial.number, None) not in ranked[:self.keep]:
            return
        try:
            artifact_id = self._upload(trial, model, recipe)
        except CannotWrite as exc:  # the trial trained: its result stands, only its weights are lost
            record.weights_not_kept(trial, f"cannot write {exc.path} ({exc.reason})"
                                    + (f": {exc.remedy}" if exc.remedy else ""))
            return
        record.weights_kept(trial, artifact_id)
        for _, _, dropped in ranked[self.keep:]:
            if dropped is not None:
                try:
                    self.store.remove(dropped)
                except ArtifactNotFound:  # another worker removed it first
                    pass

    def _upload(self, trial: optuna.Trial, model: torch.nn.Module, recipe: TrialRecord) -> str:
        """The trial's weights as an artifact of it, written whole or not at all; its artifact id."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CannotWrite(self.folder, exc) from None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial-{trial.number}.safetensors"
            save_state_dict(model, path, {"study": trial.study.study_name, "trial": str(trial.number),
                                          **recipe.header()})
            return upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial,
                                   mimetype="application/octet-stream")

    def _exists(self, artifact_id: str | None) -> bool:
        return artifact_id is not None and (self.folder / artifact_id).is_file()


class WholeFileStore(FileSystemArtifactStore):
    """Optuna's artifact folder, each file written under a temporary name and renamed (files.py): a full disk
    leaves no truncated weights behind for the dashboard, export or a transfer study to read."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.folder = folder

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        def copy(temporary: Path) -> None:
            with temporary.open("wb") as file:
                shutil.copyfileobj(content_body, file)

        save_atomic(self.folder / artifact_id, copy)


def save_state_dict(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """The model's state dict as a safetensors file on the CPU, with text metadata in its header, written whole
    or not at all (files.CannotWrite)."""
    from safetensors.torch import save  # imports torch: only where weights are written or read

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, save(tensors, metadata={**metadata, "keys": json.dumps(list(tensors))}))


class UnreadableWeights(HpsearchError):
    """A weights file that is damaged, truncated, or not one hpsearch wrote."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} is not a safetensors file hpsearch can read ({reason}): it is damaged, or not "
                         "safetensors; replace it (`hpsearch export` copies a trial's stored weights, `hpsearch train` "
                         "writes new ones)")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A file of save_state_dict, in the model's own key order (safetensors sorts by name;
    transfer learning matches layers by position)."""
    from safetensors.torch import load_file

    order = read_header(path).get("keys", "[]")
    try:
        tensors = load_file(str(path))
        order = json.loads(order)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnreadableWeights(path, _reason(exc)) from None
    if not (isinstance(order, list) and all(isinstance(k, str) for k in order)):
        raise UnreadableWeights(path, "its header's keys are not a list of names")
    return {k: tensors[k] for k in order} if sorted(order) == sorted(tensors) else tensors


def read_header(path: Path) -> dict[str, str]:
    """The text metadata of a safetensors file (export.weights_record reads the record in it)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise UnreadableWeights(path, _reason(exc)) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc).removeprefix("Error while deserializing header: ")


def copy_weights(source: Path, path: Path) -> None:
    """Copy a weights file of save_state_dict's, the record in its header masked as every Init is: a file kept by
    an earlier hpsearch may name its source study's storage with the password. Only such a header is rewritten,
    without torch; the tensors are copied byte for byte."""
    with source.open("rb") as file:
        head = b""
        try:
            size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(size))
            recipe = TrialRecord.from_header(metadata := header.get("__metadata__") or {})
        except ValueError:  # not a header this code wrote: copied as it is
            recipe = None
        if recipe is not None and not recipe.header().items() <= metadata.items():
            header["__metadata__"] = {**metadata, **recipe.header()}
            text = json.dumps(header, separators=(",", ":")).encode()
            text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes, keeping the tensors aligned
            head = len(text).to_bytes(8, "little") + text
        else:
            file.seek(0)

        def write(temporary: Path) -> None:
            with temporary.open("wb") as copy:
                copy.write(head)
                shutil.copyfileobj(file, copy)

        save_atomic(path, write)


def trial_weights_path(storage_url: str, trial: FrozenTrial) -> Path | None:
    """The file holding this trial's weights, or None if it has none (never kept, or dropped)."""
    artifact_id = record.weights_artifact(trial)
    if artifact_id is None:
        return None
    path = artifact_dir(storage_url) / artifact_id
    return path if path.is_file() else None


def why_no_weights(trial: FrozenTrial | None) -> str:
    """Why a trial (None: one not in the study) has no stored weights, for the line that says so."""
    if trial is not None and (reason := record.outcome(trial).weights_not_kept) is not None:
        return f"they could not be written: {reason}"
    return "only the best completed trials keep theirs"


def load_trial_state_dict(storage_url: str, study_name: str, trial: int | str = "best") -> dict[str, torch.Tensor]:
    """The stored weights of a trial ("best": the best-ranked trial that has weights), on the CPU."""
    return load_state_dict_file(stored_weights(storage_url, study_name, trial))


def stored_weights(storage_url: str, study_name: str, trial: int | str = "best") -> Path:
    """The file of a trial's stored weights ("best": the best-ranked trial that has weights); HpsearchError with
    the fix where there is none."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_existing(storage_url))
    except KeyError:
        raise HpsearchError(f"no study named {study_name!r} in {mask(storage_url)}: check --study and --storage") from None
    if trial == "best":
        found = next(((t, p) for t in ranking.ranked(study.get_trials(deepcopy=False))
                      if (p := trial_weights_path(storage_url, t))), None)
        if found is None:
            raise HpsearchError(f"study {study_name!r} has no completed trial with stored weights "
                                f"in {artifact_dir(storage_url)}: run more trials with `hpsearch run --study {study_name}`")
        return found[1]
    if not str(trial).isdigit():
        raise HpsearchError(f"trial {trial!r}: give a trial number or \"best\"")
    number = int(trial)
    chosen = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    path = trial_weights_path(storage_url, chosen) if chosen is not None else None
    if path is None:
        why = why_no_weights(chosen)
        raise HpsearchError(f"trial #{number} of study {study_name!r} has no stored weights ({why}): retrain it with "
                            f"`hpsearch export --study {study_name} --trial {number} -o trial.yaml` then "
                            "`hpsearch train --config trial.yaml`")
    return path

