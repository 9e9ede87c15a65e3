"""A trial of a stored study that another study's trials start from (init: study): the storage its record names,
with the password given to this command, and the trial with its stored weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial

from hpsearch import storage
from hpsearch import record
from hpsearch.errors import HpsearchError, StorageError
from hpsearch.results.artifacts import load_trial_state_dict, trial_weights_path
from hpsearch.results.ranking import ranked
from hpsearch.record import Init

if TYPE_CHECKING:
    import torch


def source_url(init: Init, storage_url: str | None) -> str:
    """The URL that opens a recorded source study's storage.

    A record keeps it masked (hpsearch stores no password), so a password comes from where the user gives one to
    this command: its storage (`storage_url`: --storage or $HPSEARCH_STORAGE) or $HPSEARCH_STORAGE, whichever
    masks to the record's. A record without a storage names this command's.
    """
    own = storage.storage_url(storage_url)
    if init.storage is None:
        return own
    if not storage.secrets(init.storage):
        return init.storage
    for url in (own, storage.storage_url(None)):
        if storage.mask(url) == init.storage:
            return url
    raise HpsearchError(f"init.storage: study {init.study!r} is in {init.storage}, whose password hpsearch does not "
                        "keep: set $HPSEARCH_STORAGE to that URL with its password")


def stored_trial(name: str, trial: int | str, url: str) -> tuple[FrozenTrial, dict[str, torch.Tensor]]:
    """Trial `trial` of study `name` in the storage at `url` ("best": the best-ranked trial that kept its weights),
    and its stored weights; HpsearchError naming the init: key to fix where there is none, or it records no
    config to rebuild its model from."""
    run_it = f"run it first (hpsearch run --study {name}) or set init.storage to the storage that holds it"
    if storage.is_new_sqlite(url):
        raise HpsearchError(f"init.study: the source study {name!r} is not there: no storage {storage.mask(url)} "
                            f"yet; {run_it}")
    try:
        study = optuna.load_study(study_name=name, storage=storage.open_existing(url))
    except KeyError:
        raise HpsearchError(f"init.study: no study named {name!r} in {storage.mask(url)}: {run_it}") from None
    except StorageError as exc:
        raise HpsearchError(f"init.study: the source study {name!r}: {exc}") from None
    if trial == "best":  # the best-ranked trial that kept its weights (only the best few do; see artifacts.py)
        frozen = next((t for t in ranked(study.get_trials(deepcopy=False)) if trial_weights_path(url, t)), None)
        if frozen is None:
            raise HpsearchError(f"init.study: study {name!r} has no completed trial with stored weights "
                                f"yet: run it first (hpsearch run --study {name})")
    else:
        frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == trial), None)
        if frozen is None:
            raise HpsearchError(f"init.trial: study {name!r} has no trial #{trial}")
    if record.config(frozen) is None:
        raise HpsearchError(f"init.study: trial #{frozen.number} of {name!r} records no config to rebuild it from")
    return frozen, load_trial_state_dict(url, name, frozen.number)  # the number, so weights and config are one trial's
