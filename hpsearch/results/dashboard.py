"""optuna-dashboard on a study's storage and artifact store: hpsearch only picks the address; and the study's
note, which the dashboard shows first on the study's page.

The server is optuna-dashboard's own (`run_server`, wsgiref: fine for one person's browser, not
for the open internet), so it binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna_dashboard import get_note, run_server, save_note

from hpsearch.defaults import DEFAULT_HOST, DEFAULT_PORT
from hpsearch.errors import HpsearchError
from hpsearch.results.artifacts import artifact_dir
from hpsearch.storage import open_storage


def study_url(host: str, port: int, study_id: int) -> str:
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address needs brackets in a URL
    return f"http://{shown}:{port}/dashboard/studies/{study_id}"


def serve(storage_url: str, study_name: str, *, announce: Callable[[str], None], host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT) -> None:
    """Serve the dashboard until interrupted; `announce` gets the study's page address first."""
    storage = open_storage(storage_url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        raise HpsearchError(f"no study named {study_name!r} in this storage: check --study and --storage") from None
    folder = artifact_dir(storage_url)
    store = FileSystemArtifactStore(folder) if folder.is_dir() else None  # None: the dashboard says so
    announce(study_url(host, port, study_id))
    try:
        run_server(storage, host=host, port=port, artifact_store=store)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise HpsearchError(f"port {port} on {host} is in use: choose another with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise HpsearchError(f"cannot listen on {host}: it is not an address of this machine (--host)") from None
        if isinstance(exc, socket.gaierror):
            raise HpsearchError(f"cannot listen on {host}: not an address or a known host name ({exc.strerror}; "
                                "--host)") from None
        raise


NOTE_END = "*hpsearch rewrites the note above this line at the end of every run; what you write below it is kept.*"


def write_note(study: optuna.Study, summary: str) -> None:
    """Make `summary` (Markdown) the study's dashboard note, keeping what a person wrote below it (all of an
    earlier note that hpsearch did not write)."""
    old = get_note(study)
    kept = old.partition(NOTE_END)[2] if NOTE_END in old else "\n\n" + old if old else ""
    save_note(study, f"{summary.rstrip()}\n\n---\n{NOTE_END}{kept}")
