"""The data store: MongoDB collections and GridFS (embedded or a real server)."""

from __future__ import annotations

from alflow.store.connection import Connection, connect, is_mongodb_uri, mask_uri
from alflow.store.store import STATUSES, Store

__all__ = ["STATUSES", "Connection", "Store", "connect", "is_mongodb_uri", "mask_uri", "open_store"]


def open_store(
    store: str, *, db_name: str = "alflow", writable: bool = True
) -> tuple[Connection, Store]:
    """Connect to ``store`` (path or URI) and return the connection and the Store.

    Indexes are created when the store is writable.
    """
    connection = connect(store, writable=writable)
    data = Store(connection.client[db_name])
    if writable:
        data.ensure_indexes()
    return connection, data
