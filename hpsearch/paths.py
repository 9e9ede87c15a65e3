"""File names made from names a user chose (a study's): one safe component each, never a path.

A study name may hold `/`, `..`, spaces or any Unicode; used raw, it would nest folders or write
outside the storage's folder. `slug` keeps the readable part and adds a short hash of the whole
name, so two names that read alike (`a/b`, `a_b`) still get files of their own.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_READABLE = 40  # characters of the name kept in the file name
MAX_NAME = 128  # characters of a study name: it heads every log line and report


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a study (too long, or holding control characters that would break one-line logs
    and play tricks on a terminal), or None."""
    if len(name) > MAX_NAME:
        return f"is {len(name):,} characters long: at most {MAX_NAME}"
    if bad := sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")}):
        shown = ", ".join(ascii(c) for c in bad[:5])
        return f"holds control characters ({shown}): letters, digits and punctuation only"
    return None


def slug(name: str) -> str:
    """`name` as one file-name component: its ASCII letters, digits, '_', '-' and inner '.' (the
    rest become '_'), then '-' and 8 hex digits of its SHA-256."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:MAX_READABLE].strip("._-") or "_"
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
