"""``alflow server ...``: the local server of a store directory, from the command line.

- ``alflow server start [--store DIR]``: start (or find) it; the last line is its URI;
- ``alflow server stop [--store DIR]``: stop it;
- ``alflow server launchpad [--out FILE]``: a launchpad file for ``lpad -l FILE``;
- ``alflow server import OLD.bson [--store DIR]``: import a one-file store of an older alflow.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from alflow.errors import ConfigError
from alflow.settings import load_settings
from alflow.store import connect, is_mongodb_uri, resolve_store
from alflow.store.legacy import import_legacy_store
from alflow.store.server import ensure_server, stop_server
from alflow.workflow.launchpad import launchpad_file

__all__ = ["register"]

_STORE_HELP = "store directory (default: ALFLOW_STORE or alflow-store)"


def _store_dir(args: argparse.Namespace) -> tuple[Any, str]:
    settings = load_settings(overrides={"store": args.store})
    if is_mongodb_uri(settings.store):
        raise ConfigError(
            f"'alflow server' manages the local server of a store directory; {settings.store!r} "
            "is a URI of a server run elsewhere"
        )
    return settings, settings.store


def _cmd_start(args: argparse.Namespace) -> int:
    settings, store = _store_dir(args)
    server = ensure_server(
        store, program=settings.local_server, port=settings.server_port, pin=True
    )
    print(f"local server ({Path(server.program).name}, pid {server.pid}) for {server.store_dir}")
    print(server.uri)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    _, store = _store_dir(args)
    stopped = stop_server(store)
    print(f"stopped the local server of {Path(store).resolve()}" if stopped else "not running")
    return 0


def _cmd_launchpad(args: argparse.Namespace) -> int:
    settings = load_settings(overrides={"store": args.store})
    uri, _ = resolve_store(  # pinned: the file is for later commands, keep the server up
        settings.store,
        local_server=settings.local_server,
        server_port=settings.server_port,
        pin=True,
    )
    path = launchpad_file(uri, settings.launchpad_name, args.out)
    print(f"wrote {path}: lpad -l {path} get_wflows")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    settings, store = _store_dir(args)
    connection = connect(store, settings=settings)
    counts = import_legacy_store(args.file, connection.client)
    for name, count in sorted(counts.items()):
        print(f"{count:8d}  {name}")
    print(f"imported {args.file} into {connection.display}")
    return 0


def register(sub: Any) -> None:
    """Add ``alflow server`` to the CLI's subparsers."""
    server = sub.add_parser("server", help="the local MongoDB-wire server of a store directory")
    actions = server.add_subparsers(dest="server_command", required=True)
    start = actions.add_parser("start", help="start (or find) it; prints its mongodb:// URI last")
    start.add_argument("--store", help=_STORE_HELP)
    start.set_defaults(func=_cmd_start)
    stop = actions.add_parser("stop", help="stop it")
    stop.add_argument("--store", help=_STORE_HELP)
    stop.set_defaults(func=_cmd_stop)
    pad = actions.add_parser("launchpad", help="write a FireWorks launchpad file for it")
    pad.add_argument("--store", help=_STORE_HELP + ", or a mongodb:// URI")
    pad.add_argument("--out", default="my_launchpad.yaml", help="file (default my_launchpad.yaml)")
    pad.set_defaults(func=_cmd_launchpad)
    imp = actions.add_parser("import", help="import a one-file store (.bson) of an older alflow")
    imp.add_argument("file", help="the old store file, e.g. alflow-store.bson")
    imp.add_argument("--store", help=_STORE_HELP)
    imp.set_defaults(func=_cmd_import)
