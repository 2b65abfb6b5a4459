"""A FireWorks LaunchPad on the same server as the alflow store."""

from __future__ import annotations

import logging
from typing import Any

from alflow.store import Connection

__all__ = ["open_launchpad"]

log = logging.getLogger(__name__)

_COLLECTIONS = ("fireworks", "launches", "offline_runs", "fw_id_assigner", "workflows")


def open_launchpad(
    connection: Connection, name: str = "fireworks", strm_lvl: str = "WARNING"
) -> Any:
    """Return a LaunchPad whose database ``name`` lives on ``connection``'s server.

    On a real server this is FireWorks' own URI-mode LaunchPad. On the embedded
    server the LaunchPad is pointed at the shared in-process client, because a
    second mongomock client would see an independent snapshot. A database
    without FireWorks' id counters is initialised (never reset).

    Parameters
    ----------
    connection
        The open store connection.
    name
        LaunchPad database name.
    strm_lvl
        FireWorks' own log level.

    Returns
    -------
    fireworks.LaunchPad
    """
    from fireworks import LaunchPad
    from fireworks.fw_config import GRIDFS_FALLBACK_COLLECTION

    if connection.embedded is None:
        launchpad = LaunchPad(host=connection.store, name=name, uri_mode=True, strm_lvl=strm_lvl)
    else:
        import gridfs

        launchpad = LaunchPad(name=name, strm_lvl=strm_lvl, mongoclient_kwargs={"connect": False})
        launchpad.connection.close()
        launchpad.connection = connection.client
        launchpad.db = connection.client[name]
        for collection in _COLLECTIONS:
            setattr(launchpad, collection, launchpad.db[collection])
        if GRIDFS_FALLBACK_COLLECTION:
            launchpad.gridfs_fallback = gridfs.GridFS(launchpad.db, GRIDFS_FALLBACK_COLLECTION)
    if launchpad.fw_id_assigner.count_documents({}) == 0:
        launchpad._restart_ids(1, 1)
        launchpad.tuneup()
        log.info("initialised LaunchPad database '%s'", name)
    return launchpad
