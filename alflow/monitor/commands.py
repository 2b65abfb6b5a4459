"""CLI subcommands of alflow.monitor (registered by alflow.cli): webgui and report."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from alflow.monitor.live import LiveStore
from alflow.monitor.webgui import check_bind, create_app, make_server
from alflow.query.api import connect_reader
from alflow.report.write import write_report
from alflow.settings import load_settings
from alflow.store import Store

__all__ = ["register"]

log = logging.getLogger(__name__)

_STORE_HELP = (
    "store: a store directory (default alflow-store; its local server is started or found) "
    "or a mongodb:// URI; env ALFLOW_STORE"
)


def _settings(args: argparse.Namespace) -> Any:
    return load_settings(overrides={"store": getattr(args, "store", None)})


def _cmd_webgui(args: argparse.Namespace) -> int:
    check_bind(args.host, args.username, args.password)
    settings = _settings(args)
    live = LiveStore(
        settings.store,
        store_name=settings.store_name,
        launchpad_name=settings.launchpad_name,
        settings=settings,
    )
    app = create_app(live, username=args.username, password=args.password, refresh_s=args.refresh_s)
    server = make_server(app, args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{server.server_port}/"
    print(f"alflow webgui: {live.display} (live, read-only)", flush=True)
    print(f"alflow webgui: FireWorks GUI at {url}  alflow pages at {url}alflow/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("alflow webgui: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    connection = connect_reader(settings.store, settings=settings)
    store = Store(connection.client[settings.store_name])  # read only: no indexes created
    names = [args.campaign] if args.campaign else store.campaign_names()
    if not names:
        print("no campaigns in this store")
        return 0
    for name in names:
        written = write_report(store, name, args.out)
        print(f"campaign '{name}': " + ", ".join(str(p) for p in written))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alflow webgui`` and ``alflow report`` to the ``alflow`` parser."""
    webgui = subparsers.add_parser(
        "webgui",
        help="FireWorks web GUI for the store, with alflow's figures at /alflow (read-only)",
        description=(
            "Serve FireWorks' web GUI for the store's LaunchPad, plus alflow pages with each "
            "campaign's figures and iterations. It reads the store's server while 'alflow run' "
            "writes to it, and never writes anything."
        ),
    )
    webgui.add_argument("--store", help=_STORE_HELP)
    webgui.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    webgui.add_argument("--port", type=int, default=5000, help="port (default 5000; 0: any free)")
    webgui.add_argument("--username", help="basic-auth user (required off localhost)")
    webgui.add_argument("--password", help="basic-auth password (required off localhost)")
    webgui.add_argument(
        "--refresh-s",
        type=int,
        default=5,
        help="how often campaign pages check for new state (seconds, default 5)",
    )
    webgui.set_defaults(func=_cmd_webgui)

    report = subparsers.add_parser(
        "report", help="write a campaign's PNG figures and a Markdown summary"
    )
    report.add_argument("--campaign", help="one campaign (default: all)")
    report.add_argument("--store", help=_STORE_HELP)
    report.add_argument("--out", required=True, help="output directory")
    report.set_defaults(func=_cmd_report)
