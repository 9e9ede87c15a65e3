"""Storage URLs: which one to use, which are refused, how to print one without its password, and the driver
options every connection to it gets."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote

from hpsearch.defaults import DEFAULT_STORAGE
from hpsearch.errors import StorageError

SQLITE_BUSY_TIMEOUT_S = 60  # several local workers may write at once: wait for the lock, do not fail
CONNECT_TIMEOUT_S = 5  # a PostgreSQL server silent this long is reported, not waited for (psycopg's own: 130 s)


def storage_url(given: str | None) -> str:
    """--storage, else $HPSEARCH_STORAGE, else the SQLite file hpsearch.db here; refused before anything is
    made where no study could be kept (see refuse_unusable)."""
    url = given or os.environ.get("HPSEARCH_STORAGE") or DEFAULT_STORAGE
    refuse_unusable(url)
    return url


_SECRET_QUERY = re.compile(r"(^|&)((?:ssl)?password)=([^&]*)", re.IGNORECASE)  # libpq's password parameters


def _userinfo(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme://, user, password or None, host and path, ?query) of a URL with a user part, else None.

    Split by hand rather than by a URL parser: a password may hold an unescaped `:`, `/` or `@`, and a parser
    takes the text after the first `@` for the host (then prints it in its errors). The user part ends at the
    last `@` before the query.
    """
    base, question, query = url.partition("?")
    scheme, sep, rest = base.partition("://")
    if not sep or "@" not in rest or rest.startswith("/"):
        return None
    userinfo, host = rest.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://", user, password if colon else None, host, question + query


def secrets(url: str) -> list[str]:
    """Every password in `url`, as written and URL-decoded: what no message may show."""
    parts = _userinfo(url)
    found = [parts[2]] if parts and parts[2] else []
    found += [m.group(3) for m in _SECRET_QUERY.finditer(url.partition("?")[2]) if m.group(3)]
    return [s for secret in found for s in dict.fromkeys((secret, unquote(secret)))]


def mask(url: str) -> str:
    """The URL with every password replaced by ***, fit for messages and logs."""
    if parts := _userinfo(url):
        scheme, user, password, host, query = parts
        url = f"{scheme}{user}{':***' if password is not None else ''}@{host}{query}"
    base, question, query = url.partition("?")
    return base + question + _SECRET_QUERY.sub(r"\1\2=***", query)


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error, say) with every password of `url` replaced by ***."""
    for secret in sorted(secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def refuse_unusable(url: str) -> None:
    """StorageError for a URL no study should be stored at: in-memory SQLite (no other worker could share it
    and nothing would outlive the run) and a password holding an unescaped `@` (read as part of the host)."""
    if url.startswith("sqlite:") and (url.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://")
                                      or url.endswith(":memory:") or "mode=memory" in url):
        raise StorageError(f"{url}: an in-memory SQLite storage vanishes when the run ends and no other worker can "
                           "share it: give a file (sqlite:///hpsearch.db) or a server")
    parts = _userinfo(url)
    if parts and parts[2] and "@" in parts[2]:
        raise StorageError(f"the password in {mask(url)} holds an unescaped @: write it as %40 (URL-encode "
                           "the password)")


def sqlite_file(url: str) -> Path | None:
    """The database file of an `sqlite:///` URL, or None for other storages (and in-memory SQLite)."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def is_new_sqlite(url: str) -> bool:
    """Whether `url` is an SQLite file that does not exist yet (open_storage would create it)."""
    path = sqlite_file(url)
    return path is not None and not path.exists()


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql:", "postgresql+"))


def driver_url(url: str) -> str:
    """postgresql:// spelled with the psycopg 3 driver hpsearch installs (SQLAlchemy < 2.1 would pick psycopg2)."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


LIBPQ_DRIVERS = ("postgresql+psycopg", "postgresql+psycopg2")  # those that take libpq's connect_timeout


def engine_options(url: str) -> dict:
    """create_engine's keywords for every connection hpsearch makes to `url`.

    SQLite waits SQLITE_BUSY_TIMEOUT_S for another writer's lock. PostgreSQL gives up after CONNECT_TIMEOUT_S on
    a server that does not answer (a wrong port, a host that drops packets, a server that accepts and stays
    silent), instead of psycopg's 130 s; the URL's own connect_timeout, or libpq's $PGCONNECT_TIMEOUT, wins.
    Other drivers (pg8000, asyncpg) name their timeouts otherwise, and get none from hpsearch.
    """
    if sqlite_file(url) is not None:
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if (driver_url(url).partition("://")[0] in LIBPQ_DRIVERS and "PGCONNECT_TIMEOUT" not in os.environ
            and "connect_timeout" not in parse_qs(url.partition("?")[2])):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}
