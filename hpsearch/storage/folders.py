"""Where a storage's side files live: its locks, checkpoints, kept weights and worker logs, in one folder beside
an SQLite file, or where the environment says for a server storage."""

from __future__ import annotations

import os
from pathlib import Path

from hpsearch.files import check_writable
from hpsearch.paths import slug
from hpsearch.storage.urls import sqlite_file


def side_folder(url: str) -> Path:
    """The one folder of a storage's side files: x-files/ beside an SQLite file x.db, else ./hpsearch-files
    (for a server storage each kind may live elsewhere, see folder_beside)."""
    db = sqlite_file(url)
    return db.with_name(f"{db.stem}-files") if db is not None else Path("hpsearch-files")


def folder_beside(url: str, kind: str, env_var: str | None = None) -> Path:
    """The folder of one kind of this storage's side files (locks, checkpoints, artifacts, logs):
    side_folder(url)/KIND.

    For a server storage every machine must see the same folder to share it, so $ENV_VAR names it where
    set. Earlier versions kept each kind in a folder of its own, x-KIND/ beside x.db (else ./hpsearch-KIND):
    where that folder exists it is still used, so the checkpoints and weights of studies run then are found.
    """
    if env_var and sqlite_file(url) is None and os.environ.get(env_var):
        return Path(os.environ[env_var])
    db = sqlite_file(url)
    legacy = db.with_name(f"{db.stem}-{kind}") if db is not None else Path(f"hpsearch-{kind}")
    return legacy if legacy.is_dir() else side_folder(url) / kind


def checkpoint_root(url: str) -> Path:
    """Where the trials' per-epoch checkpoints go (training/checkpoint.py): x-files/checkpoints/ beside x.db; for
    a server storage $HPSEARCH_CHECKPOINTS, else ./hpsearch-files/checkpoints.

    With PostgreSQL and several machines, a retried trial resumes only where its checkpoint is
    visible (a shared folder in $HPSEARCH_CHECKPOINTS); elsewhere it starts again from epoch 1.
    """
    return folder_beside(url, "checkpoints", "HPSEARCH_CHECKPOINTS")


def writable_checkpoint_root(url: str) -> Path:
    """checkpoint_root, refused now (HpsearchError) if it is full or read-only rather than after a trial's first
    epoch."""
    folder = checkpoint_root(url)
    elsewhere = "choose another storage" if sqlite_file(url) else "set $HPSEARCH_CHECKPOINTS to another folder"
    check_writable(folder, "the checkpoint folder", elsewhere)
    return folder


def trial_checkpoint(root: Path, study_name: str, first_attempt: int) -> Path:
    """The checkpoint file under `root` of a trial whose first attempt is `first_attempt`: every attempt of a trial
    shares the first attempt's (record.first_attempt)."""
    return root / slug(study_name) / f"trial-{first_attempt}.pt"
