"""A read-only, live view of a store for monitors (the web GUI).

The view is a plain connection to the store's server (a store directory's
local server, started or found running, or a ``mongodb://`` URI): the
LaunchPad is FireWorks' own URI-mode ``LaunchPad`` on it and alflow's data a
:class:`~alflow.store.Store` on the same server. Every request reads the
current state while ``alflow run`` writes (the server serves both); nothing
is reloaded, and nothing is written: no indexes, no LaunchPad
initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from alflow.query.api import connect_reader
from alflow.store import Connection, Store
from alflow.workflow.views import reader_launchpad

__all__ = ["LiveStore", "View"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    """The LaunchPad and the alflow store on one server.

    Attributes
    ----------
    launchpad
        A ``fireworks.LaunchPad`` (read it, never write through it).
    store
        The alflow data store.
    """

    launchpad: Any
    store: Store


class LiveStore:
    """A live, read-only connection to a store's LaunchPad and alflow database.

    Parameters
    ----------
    store
        A store directory or a ``mongodb://`` URI.
    store_name
        alflow's database name.
    launchpad_name
        The LaunchPad's database name.
    settings
        Local server program and port (default: from the environment).
    timeout_s
        How long to wait for the server.

    Raises
    ------
    StoreError
        No store at that path, or an unreachable server.
    """

    def __init__(
        self,
        store: str,
        *,
        store_name: str = "alflow",
        launchpad_name: str = "fireworks",
        settings: Any | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.store_name = store_name
        self.launchpad_name = launchpad_name
        self.connection: Connection = connect_reader(store, timeout_s=timeout_s, settings=settings)
        launchpad = reader_launchpad(self.connection.uri, launchpad_name)
        self._view = View(launchpad, Store(self.connection.client[store_name]))
        log.debug("live view of %s", self.connection.display)

    @property
    def display(self) -> str:
        """The store for messages (any password masked)."""
        return self.connection.display

    def current(self) -> View:
        """The view (always the server's current state)."""
        return self._view

    def close(self) -> None:
        """Close both clients."""
        self._view.launchpad.connection.close()
        self.connection.client.close()
