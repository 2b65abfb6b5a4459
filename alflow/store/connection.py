"""Open the server behind a store string: a store directory or a ``mongodb://`` URI.

A store directory (default ``alflow-store/``) is served by the local server of
:mod:`alflow.store.server`, started or found here; a URI names a site's
MongoDB. Either way the result is a plain pymongo client on a ``mongodb://``
URI: the rest of alflow has one code path.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alflow.errors import StoreError
from alflow.settings import load_settings
from alflow.store.legacy import LEGACY_FORMAT
from alflow.store.server import LocalServer, ensure_server, has_data

__all__ = ["Connection", "connect", "is_mongodb_uri", "mask_uri", "resolve_store"]

log = logging.getLogger(__name__)

_URI = re.compile(r"^mongodb(\+srv)?://", re.IGNORECASE)
_PASSWORD = re.compile(r"(?P<head>^mongodb(\+srv)?://[^:/@]+:)(?P<password>[^@]*)(?P<tail>@)", re.I)


def is_mongodb_uri(store: str) -> bool:
    """True for ``mongodb://`` and ``mongodb+srv://`` URIs, False for paths."""
    return bool(_URI.match(store))


def mask_uri(store: str) -> str:
    """The store string with any password replaced by ``***`` (safe for logs)."""
    return _PASSWORD.sub(r"\g<head>***\g<tail>", store)


@dataclass
class Connection:
    """A pymongo client on ``uri`` and, for a store directory, its local server."""

    client: Any
    uri: str
    local: LocalServer | None = None

    @property
    def display(self) -> str:
        """The URI with the password masked (and the store directory, if local)."""
        if self.local is not None:
            return f"{self.local.store_dir} ({self.uri})"
        return mask_uri(self.uri)


def _refuse_legacy(path: Path) -> None:
    """A one-file store of alflow ≤ 0.1 (in-process mongomock): say how to import it."""
    head = b""
    if path.is_file():
        with open(path, "rb") as handle:
            head = handle.read(64)
    if path.suffix == ".bson" or LEGACY_FORMAT.encode() in head:
        raise StoreError(
            f"{path} is a one-file store of an older alflow; import it into a server store "
            f"with: alflow server import {path} --store {path.with_suffix('')}"
        )


def resolve_store(
    store: str,
    *,
    local_server: str = "secantusd-py",
    server_port: int = 0,
    timeout_s: float = 60.0,
    pin: bool = False,
) -> tuple[str, LocalServer | None]:
    """The ``mongodb://`` URI behind ``store``, starting its local server if needed.

    Parameters
    ----------
    store
        A ``mongodb://`` URI, or a store directory served by the local server.
    local_server, server_port
        The local server's program and port (0: any free port).
    timeout_s
        How long to wait for a local server to answer.
    pin
        Keep a local server running after every alflow process is gone.

    Returns
    -------
    uri : str
    server : LocalServer or None
        The local server, for a store directory.
    """
    if is_mongodb_uri(store):
        return store, None
    path = Path(store).expanduser()
    _refuse_legacy(path)
    server = ensure_server(
        path, program=local_server, port=server_port, timeout_s=timeout_s, pin=pin
    )
    return server.uri, server


def connect(
    store: str,
    *,
    timeout_s: float = 10.0,
    settings: Any | None = None,
    must_exist: bool = False,
) -> Connection:
    """Open the server behind ``store``.

    Parameters
    ----------
    store
        A ``mongodb://`` URI, or a store directory (its local server is
        started, or found running).
    timeout_s
        How long to wait for a server before giving up.
    settings
        :class:`~alflow.settings.Settings` naming the local server program and
        port (default: read from the environment).
    must_exist
        Readers: a store directory without the server's data is an error
        (nothing is created).

    Returns
    -------
    Connection

    Raises
    ------
    StoreError
        Unreachable server, invalid URI, old one-file store, or a local
        server that cannot start; the message masks any password.
    """
    import pymongo
    from pymongo.errors import PyMongoError

    if must_exist and not is_mongodb_uri(store):
        path = Path(store).expanduser()
        if path.suffix != ".bson" and not has_data(path):
            raise StoreError(
                f"no alflow store at {path.resolve()} (run a campaign first, or pass --store)"
            )
    if settings is None:
        settings = load_settings()
    uri, local = resolve_store(
        store, local_server=settings.local_server, server_port=settings.server_port
    )
    try:
        # the client waits 30 s for a server (a local one restarts within that);
        # the first ping gives up after timeout_s
        client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=30_000)
        with pymongo.timeout(timeout_s):
            client.admin.command("ping")
    except PyMongoError as exc:
        message = mask_uri(str(exc).split(", Timeout:")[0])
        raise StoreError(f"cannot reach MongoDB at {mask_uri(uri)}: {message}") from None
    except Exception as exc:  # invalid URIs raise ConfigurationError/ValueError/...
        raise StoreError(f"invalid MongoDB URI {mask_uri(uri)}: {mask_uri(str(exc))}") from None
    return Connection(client=client, uri=uri, local=local)
