"""File names made from names a user chose (a study's): one safe component each, never a path.

A study name may hold `/`, `..`, spaces or any Unicode; used raw, it would nest folders or write
outside the storage's folder. `slug` keeps the readable part and adds a short hash of the whole
name, so two names that read alike (`a/b`, `a_b`) still get files of their own.
"""

from __future__ import annotations

import hashlib
import re

MAX_READABLE = 40  # characters of the name kept in the file name


def slug(name: str) -> str:
    """`name` as one file-name component: its ASCII letters, digits, '_', '-' and inner '.' (the
    rest become '_'), then '-' and 8 hex digits of its SHA-256."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:MAX_READABLE].strip("._-") or "_"
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
