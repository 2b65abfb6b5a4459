"""Open the server behind a store string: a file (embedded) or a mongodb:// URI.

The rest of alflow works on plain pymongo ``Database`` objects, so the same
code runs on the embedded mongomock server and on a real MongoDB.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from alflow.errors import StoreError
from alflow.store.embedded import EmbeddedServer, open_embedded

__all__ = ["Connection", "connect", "is_mongodb_uri", "mask_uri"]

log = logging.getLogger(__name__)

_URI = re.compile(r"^mongodb(\+srv)?://", re.IGNORECASE)
_PASSWORD = re.compile(r"(?P<head>^mongodb(\+srv)?://[^:/@]+:)(?P<password>[^@]*)(?P<tail>@)", re.I)


def is_mongodb_uri(store: str) -> bool:
    """True for ``mongodb://`` and ``mongodb+srv://`` URIs, False for file paths."""
    return bool(_URI.match(store))


def mask_uri(store: str) -> str:
    """The store string with any password replaced by ``***`` (safe for logs)."""
    return _PASSWORD.sub(r"\g<head>***\g<tail>", store)


@dataclass
class Connection:
    """A client and, for the embedded store, the server that persists it."""

    client: Any
    store: str
    embedded: EmbeddedServer | None = None

    @property
    def display(self) -> str:
        """The store string with the password masked."""
        return mask_uri(self.store)

    def save(self) -> None:
        """Persist the embedded state (a real server persists by itself)."""
        if self.embedded is not None and self.embedded.writable:
            self.embedded.save()


def connect(store: str, *, writable: bool = True, timeout_s: float = 5.0) -> Connection:
    """Open the server behind ``store``.

    Parameters
    ----------
    store
        A ``mongodb://`` URI, or a file path for the embedded server.
    writable
        Embedded only: take the single-writer lock (False: read-only snapshot).
    timeout_s
        How long to wait for a real server before giving up.

    Returns
    -------
    Connection

    Raises
    ------
    StoreError
        The server is unreachable or the file unreadable; the message masks
        any password.
    """
    if is_mongodb_uri(store):
        import pymongo
        from pymongo.errors import PyMongoError

        try:
            client: Any = pymongo.MongoClient(store, serverSelectionTimeoutMS=int(timeout_s * 1000))
            client.admin.command("ping")
        except PyMongoError as exc:
            message = mask_uri(str(exc).split(", Timeout:")[0])
            raise StoreError(f"cannot reach MongoDB at {mask_uri(store)}: {message}") from None
        except Exception as exc:  # invalid URIs raise ConfigurationError/ValueError/...
            raise StoreError(
                f"invalid MongoDB URI {mask_uri(store)}: {mask_uri(str(exc))}"
            ) from None
        return Connection(client=client, store=store)
    server = open_embedded(store, writable=writable)
    if not writable and not server.path.exists():
        raise StoreError(
            f"no alflow store at {server.path} (run a campaign first, or pass --store)"
        )
    return Connection(client=server.client, store=str(server.path), embedded=server)
