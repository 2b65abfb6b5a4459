"""``alflow model export``: a campaign's final committee as a directory (registered by alflow.cli).

Examples
--------
.. code-block:: console

    $ alflow model export --campaign quickstart-emt --out cu-potential
    $ alflow model export --campaign cu-gpaw --out /shared/potentials/cu --force
"""

from __future__ import annotations

import argparse
from typing import Any

from alflow.potential.card import format_size
from alflow.potential.export import export_potential
from alflow.store import open_reader

__all__ = ["register"]

_STORE_HELP = (
    "store: a store directory (default alflow-store; its local server is started or found) "
    "or a mongodb:// URI; env ALFLOW_STORE"
)


def _cmd_export(args: argparse.Namespace) -> int:
    store = open_reader(args.store)
    result = export_potential(
        store, args.campaign, args.out, force=args.force, lammps=not args.no_lammps
    )
    print(f"wrote {result.directory} (campaign '{args.campaign}')")
    for name, n_bytes in result.files.items():
        print(f"  {format_size(n_bytes):>9}  {name}")
    for name, reason in result.lammps_errors.items():
        print(f"no LAMMPS form of {name}: {reason}")
    print(f"model card: {result.card_path}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``alflow model`` and its subcommands to the ``alflow`` parser."""
    model = subparsers.add_parser("model", help="the campaign's potential: export it")
    actions = model.add_subparsers(dest="model_command", required=True)
    export = actions.add_parser(
        "export",
        help="write the final committee, its training data and its model card to a directory",
    )
    export.add_argument("--campaign", required=True, help="campaign whose final fit to export")
    export.add_argument("--out", required=True, help="directory to write (created)")
    export.add_argument("--store", help=_STORE_HELP)
    export.add_argument(
        "--force", action="store_true", help="replace --out if it exists and is not empty"
    )
    export.add_argument(
        "--no-lammps",
        action="store_true",
        help="skip the LAMMPS (TorchScript) form of each member (a few seconds each)",
    )
    export.set_defaults(func=_cmd_export)
