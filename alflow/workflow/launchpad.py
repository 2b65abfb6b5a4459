"""A FireWorks LaunchPad on the same server as the alflow store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from alflow.store import Connection

__all__ = ["iteration_exists", "launchpad_file", "open_launchpad", "shared_launchpad"]

log = logging.getLogger(__name__)

#: LaunchPads opened by this process (a worker's collect adds iterations to one).
_launchpads: dict[tuple[str, str], Any] = {}


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


def shared_launchpad(connection: Connection, name: str) -> Any:
    """This process's LaunchPad for database ``name`` on ``connection``'s server, opened once."""
    key = (connection.uri, name)
    if key not in _launchpads:
        _launchpads[key] = open_launchpad(connection, name)
    return _launchpads[key]


def iteration_exists(launchpad: Any, campaign: str, iteration: int | str) -> bool:
    """True if the LaunchPad holds a Workflow for (campaign, iteration or FINAL)."""
    query = {"metadata.campaign": campaign, "metadata.iteration": iteration}
    return launchpad.workflows.count_documents(query) > 0
