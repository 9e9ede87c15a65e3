"""torch files read without running code (checkpoints, .pt weights), and the one list of the ways such a file turns
out damaged or foreign.

weights_only: tensors, numbers, strings, lists and dicts come back; a pickled object, whose unpickling could
run any code (a `__reduce__` that writes a file, say), is refused before anything of it runs.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

_REFUSED = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)")


class UnreadableFile(Exception):
    """A file torch cannot load safely; `reason` says why in a few words."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def load(path: Path) -> Any:
    """The file's content on the CPU, or UnreadableFile."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the weights-only unpickler's note on the file's pickle protocol
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _REFUSED.search(str(exc))
        raise UnreadableFile(path, "not plain tensors, or damaged" + (f" ({refused[1]})" if refused else "")) from None
    except (RuntimeError, EOFError):  # the zip archive torch.save writes cut short, or an empty file
        raise UnreadableFile(path, "truncated or damaged") from None
    except OSError as exc:
        raise UnreadableFile(path, exc.strerror or str(exc)) from None
    except (LookupError, ValueError, TypeError, AttributeError):  # text, or another program's pickle
        raise UnreadableFile(path, "not a file torch wrote") from None
