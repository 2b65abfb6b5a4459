"""A read-only, live view of a store for monitors (the web GUI).

For the embedded store the view is a read-only snapshot of the state file,
reloaded when the file changes (its inode, size or mtime: the writer replaces
the file atomically after every Firework). It never takes the writer's lock
and never saves, so a monitor cannot revert a running campaign. For a
``mongodb://`` URI the view is a live connection (FireWorks' URI-mode
LaunchPad) and nothing is reloaded.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alflow.errors import StoreError
from alflow.store import Connection, Store, connect, is_mongodb_uri, mask_uri

__all__ = ["LiveStore", "Snapshot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """One consistent view: the LaunchPad and the alflow store on one client.

    Attributes
    ----------
    launchpad
        A ``fireworks.LaunchPad`` (read it, never write through it).
    store
        The alflow data store.
    version
        Identifies the state: changes whenever the embedded file changes
        (``"live"`` for a real server, whose state changes all the time).
    """

    launchpad: Any
    store: Store
    version: str


def _file_version(path: Path) -> str:
    stat = os.stat(path)
    return f"{stat.st_ino:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"


class LiveStore:
    """The current snapshot of a store, reloaded when the embedded file changes.

    Parameters
    ----------
    store
        A file path (embedded store) or a ``mongodb://`` URI.
    store_name
        alflow's database name.
    launchpad_name
        The LaunchPad's database name.
    """

    def __init__(
        self, store: str, *, store_name: str = "alflow", launchpad_name: str = "fireworks"
    ) -> None:
        self.store = store
        self.store_name = store_name
        self.launchpad_name = launchpad_name
        self.embedded = not is_mongodb_uri(store)
        self.path = Path(store).resolve() if self.embedded else None
        self._lock = threading.Lock()
        self.reloads = 0
        self._snapshot: Snapshot = self._open()

    @property
    def display(self) -> str:
        """The store for messages (any password masked)."""
        return str(self.path) if self.path is not None else mask_uri(self.store)

    def _open(self) -> Snapshot:
        if self.path is None:
            from fireworks import LaunchPad

            connection = connect(self.store, writable=False)
            launchpad = LaunchPad(
                host=self.store, name=self.launchpad_name, uri_mode=True, strm_lvl="WARNING"
            )
            return Snapshot(launchpad, Store(connection.client[self.store_name]), "live")
        from alflow.store.embedded import EmbeddedServer
        from alflow.workflow.launchpad import open_launchpad

        if not self.path.exists():
            raise StoreError(
                f"no alflow store at {self.path} (run a campaign first, or pass --store)"
            )
        version = _file_version(self.path)
        # A private read-only server (not the process-wide cache): a fresh snapshot each time.
        server = EmbeddedServer(self.path, writable=False)
        connection = Connection(client=server.client, store=str(self.path), embedded=server)
        launchpad = open_launchpad(connection, self.launchpad_name)
        self.reloads += 1
        log.debug("loaded snapshot %s of %s", version, self.path)
        return Snapshot(launchpad, Store(server.client[self.store_name]), version)

    def current(self) -> Snapshot:
        """The latest snapshot (reloading the embedded file if it changed since).

        A file that cannot be read right now keeps the previous snapshot.
        """
        snapshot = self._snapshot
        if self.path is None:
            return snapshot
        try:
            version = _file_version(self.path)
        except OSError as exc:
            log.warning("cannot stat %s (%s); showing the previous state", self.path, exc)
            return snapshot
        if version == snapshot.version:
            return snapshot
        with self._lock:
            if self._snapshot.version == version:
                return self._snapshot  # another thread reloaded meanwhile
            try:
                self._snapshot = self._open()
            except StoreError as exc:
                log.warning("%s; showing the previous state", exc)
            return self._snapshot
