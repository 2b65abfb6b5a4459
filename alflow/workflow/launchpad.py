"""A FireWorks LaunchPad on the same server as the alflow store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from alflow.store import Connection

__all__ = ["launchpad_file", "open_launchpad"]

log = logging.getLogger(__name__)


def open_launchpad(
    connection: Connection, name: str = "fireworks", strm_lvl: str = "WARNING"
) -> Any:
    """FireWorks' own URI-mode LaunchPad for database ``name`` on ``connection``'s server.

    A database without FireWorks' id counters is initialised (never reset).

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

    launchpad = LaunchPad(host=connection.uri, name=name, uri_mode=True, strm_lvl=strm_lvl)
    if launchpad.fw_id_assigner.count_documents({}) == 0:
        launchpad._restart_ids(1, 1)
        launchpad.tuneup()
        log.info("initialised LaunchPad database '%s'", name)
    return launchpad


def launchpad_file(uri: str, name: str, path: str | Path) -> Path:
    """Write a FireWorks launchpad file (``lpad -l FILE ...``) for database ``name`` at ``uri``."""
    path = Path(path)
    content = {"host": uri, "name": name, "uri_mode": True}
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path
