"""The data store: MongoDB collections and GridFS on a server (local or a site's)."""

from __future__ import annotations

from typing import Any

from alflow.settings import load_settings
from alflow.store.connection import Connection, connect, is_mongodb_uri, mask_uri, resolve_store
from alflow.store.errors import DatabaseError, ServerConnectionError
from alflow.store.store import STATUSES, Store

__all__ = [
    "STATUSES",
    "Connection",
    "DatabaseError",
    "ServerConnectionError",
    "Store",
    "connect",
    "is_mongodb_uri",
    "mask_uri",
    "open_reader",
    "open_store",
    "resolve_store",
]


def open_store(
    store: str,
    *,
    db_name: str = "alflow",
    create_indexes: bool = True,
    settings: Any | None = None,
    must_exist: bool = False,
) -> tuple[Connection, Store]:
    """Connect to ``store`` (store directory or URI) and return the connection and the Store.

    Parameters
    ----------
    store
        A store directory (its local server is started or found) or a URI.
    db_name
        alflow's database on that server.
    create_indexes
        Create alflow's indexes (idempotent; readers may skip it).
    settings
        Local server program and port (default: from the environment).
    must_exist
        Readers: refuse a store directory that holds no store (create nothing).
    """
    connection = connect(store, settings=settings, must_exist=must_exist)
    data = Store(connection.client[db_name])
    if create_indexes:
        data.ensure_indexes()
    return connection, data


def open_reader(store: str | None = None, *, settings: Any | None = None) -> Store:
    """An existing store, opened to read it (the CLI's readers): nothing is created.

    Parameters
    ----------
    store
        A store directory or URI; None: the settings' (``ALFLOW_STORE``, default
        ``alflow-store``).
    settings
        Worker settings (default: loaded from the environment with ``store``).

    Raises
    ------
    StoreError
        No store there, or an unreachable server.
    """
    if settings is None:
        settings = load_settings(overrides={"store": store})
    _, data = open_store(
        settings.store,
        db_name=settings.store_name,
        create_indexes=False,
        settings=settings,
        must_exist=True,
    )
    return data
