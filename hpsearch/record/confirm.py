"""A trial's confirmation: its retraining with new seeds, each seed's result, stored on the study.

Optuna freezes a finished trial's own attributes, so `hpsearch confirm` stores trial N's results as the study
attribute `confirm #N`, one write per result; ranking.study_trials puts each back on its trial. The claims of the
workers sharing the jobs are a study system attribute: bookkeeping, not results. A seed's result is also what
`hpsearch train --seeds` writes to results.json. Standard library only at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from hpsearch.record.keys import CONFIRM_CLAIMS, CONFIRMED

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class SeedResult:
    """What one seed reached; one whose training diverged has only its failure."""

    seed: int
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    seconds: float | None = None  # training time, the sum of its epochs
    failure: str | None = None
    device: str | None = None

    @property
    def trained(self) -> bool:
        return self.failure is None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SeedResult:
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


@dataclass(frozen=True)
class Confirmation:
    """Every seed's result, lowest seed first, and the spread (results/stats.spread: mean, std, ci95) of the
    validation and test accuracies of those that trained (None: none did)."""

    seeds: tuple[SeedResult, ...]
    val: Mapping[str, Any] | None = None
    test: Mapping[str, Any] | None = None

    @property
    def trained_seeds(self) -> list[int]:
        return [r.seed for r in self.seeds if r.trained]

    @property
    def mean_val(self) -> float | None:
        """The mean validation accuracy over the seeds that trained (None: none did)."""
        return self.val.get("mean") if self.seeds and self.val else None

    def by_seed(self) -> dict[int, SeedResult]:
        return {r.seed: r for r in self.seeds}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seeds": [r.as_dict() for r in self.seeds]}
        return out | ({"val": dict(self.val), "test": dict(self.test)} if self.val is not None else {})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Confirmation:
        return cls(tuple(SeedResult.from_dict(r) for r in raw.get("seeds", [])), raw.get("val"), raw.get("test"))


def confirmations(study_attrs: Mapping[str, Any]) -> dict[int, Confirmation]:
    """Each confirmed trial's confirmation by its number, from the study's user attributes."""
    return {int(key.removeprefix(CONFIRMED)): Confirmation.from_dict(value) for key, value in study_attrs.items()
            if key.startswith(CONFIRMED) and key.removeprefix(CONFIRMED).isdigit() and value is not None}


def store_confirmation(study: optuna.Study, number: int, confirmation: Confirmation) -> None:
    """Trial `number`'s confirmation as it now stands, in one write."""
    study.set_user_attr(f"{CONFIRMED}{number}", confirmation.as_dict())


def claims(study: optuna.Study) -> dict[str, dict]:
    """The confirm jobs claimed by workers: "trial:seed" -> {"worker", "at"}."""
    from hpsearch.storage.optuna_private import study_system_attrs

    return dict(study_system_attrs(study).get(CONFIRM_CLAIMS) or {})


def set_claims(study: optuna.Study, claims: Mapping[str, dict]) -> None:
    from hpsearch.storage.optuna_private import set_study_system_attr

    set_study_system_attr(study, CONFIRM_CLAIMS, dict(claims))
