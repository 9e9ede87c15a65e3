"""Counts and values as a person reads them and pastes them: '1 trial' and '2 trials', a value as YAML writes it
(`true`, `null`, `[64, 128]`, never Python's `True`, `None`), and YAML documents without anchors.

Light on purpose (PyYAML only): `params`, `studies` and a study file's checks print through it without loading
Optuna or torch.
"""

from __future__ import annotations

import math
from typing import Any

import yaml


def plural(count: int, noun: str) -> str:
    """'1 trial', '2 trials', '1,000 images'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class _PlainDumper(yaml.SafeDumper):
    """SafeDumper that writes a value seen twice in full each time: an anchor (`&id001`) and its alias (`*id001`)
    are valid YAML, but a reader who copies one part of the output gets the alias without what it names."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def yaml_document(data: Any) -> str:
    """`data` as a YAML document: keys in their order, no anchors, Unicode as it is."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True)


def yaml_value(value: Any) -> str:
    """One value as it would stand in a study file, on one line: `true`, `null`, `0.001`, `[64, 128]`, `adamw`,
    `1.0e-05`, and `'yes'` quoted where YAML would otherwise read another type."""
    text = yaml.dump(value, Dumper=_PlainDumper, default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n...\n").rstrip("\n")
