"""``alflow db``: campaigns, find, show, export, stats (registered by alflow.cli).

Examples
--------
.. code-block:: console

    $ alflow db campaigns
    $ alflow db find --campaign cu-emt --status labeled --max-uncertainty 0.3
    $ alflow db find --formula Cu --energy-range=-3.8:-3.5 --json
    $ alflow db show 3f9c2a
    $ alflow db export train.xyz --format extxyz --campaign cu-emt --labeled-only
    $ alflow db stats --campaign cu-emt
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from alflow.query.api import open_database
from alflow.query.export import export_atoms
from alflow.query.filters import StructureQuery, parse_range
from alflow.settings import load_settings

__all__ = ["register"]

_STORE_HELP = (
    "store: a store directory (default alflow-store; its local server is started or found) "
    "or a mongodb:// URI; env ALFLOW_STORE"
)
_DEFAULT_LIMIT = 50


def _open(args: argparse.Namespace) -> Any:
    settings = load_settings(overrides={"store": args.store})
    return open_database(
        settings.store, db_name=settings.store_name, timeout_s=args.timeout_s, settings=settings
    )


def _query(args: argparse.Namespace, default_limit: int | None) -> Any:
    low = high = None
    if args.energy_range is not None:
        low, high = parse_range(args.energy_range, "--energy-range")
    limit = default_limit if args.limit is None else args.limit
    return StructureQuery(
        campaign=args.campaign,
        formula=args.formula,
        elements=args.elements,
        iteration=args.iteration,
        status=",".join(args.status or []) or None,
        min_uncertainty_eV_A=args.min_uncertainty,
        max_uncertainty_eV_A=args.max_uncertainty,
        min_energy_eV_per_atom=low,
        max_energy_eV_per_atom=high,
        labeled_only=args.labeled_only,
        limit=limit,
    )


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _json_line(obj: Any) -> str:
    return json.dumps(obj, default=str, sort_keys=False)


def _cmd_campaigns(args: argparse.Namespace) -> int:
    db = _open(args)
    rows = db.campaigns()
    if args.json:
        for row in rows:
            print(_json_line(row))
        return 0
    if not rows:
        print(f"no campaigns in {db.display}")
        return 0
    print(
        f"{'CAMPAIGN':<24} {'STATUS':<10} {'LAST IT':>7} {'STRUCT':>8} {'LABELS':>7} "
        f"{'FAILED':>6} {'CORE-H':>8}  PER STATUS"
    )
    for r in rows:
        per_status = " ".join(f"{k}={v}" for k, v in r["per_status"].items())
        print(
            f"{r['name']:<24} {r['status'] or '-':<10} {_fmt(r['last_iteration'], 'd'):>7} "
            f"{r['n_structures']:>8} {r['labels_ok']:>7} {r['labels_failed']:>6} "
            f"{r['dft_core_hours']:>8.2f}  {per_status}"
        )
    return 0


def _cmd_find(args: argparse.Namespace) -> int:
    query = _query(args, _DEFAULT_LIMIT)
    db = _open(args)
    rows = db.find(query)
    if args.json:
        for row in rows:
            print(_json_line(row))
        return 0
    header = (
        f"{'KEY':<24} {'CAMPAIGN':<16} {'IT':>3} {'STATUS':<10} {'FORMULA':<14} {'N':>4} "
        f"{'MAXDEV eV/Å':>11} {'E eV/atom':>11}"
    )
    count = 0
    for row in rows:
        if count == 0:
            print(header)
        count += 1
        print(
            f"{row['key']:<24} {str(row['campaign'])[:16]:<16} {_fmt(row['iteration'], 'd'):>3} "
            f"{row['status']:<10} {str(row['formula'])[:14]:<14} {_fmt(row['n_atoms'], 'd'):>4} "
            f"{_fmt(row['max_force_dev_eV_A'], '.4f'):>11} "
            f"{_fmt(row['energy_per_atom_eV'], '.5f'):>11}"
        )
    if count == 0:
        print("no matching structures")
    elif query.limit is not None and count == query.limit:
        print(f"({count} shown, limit {query.limit}: --limit 0 for all, --json for JSON lines)")
    else:
        print(f"({count} structures)")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    db = _open(args)
    docs = db.show(args.key, campaign=args.campaign)
    if args.json:
        for doc in docs:
            print(_json_line(doc))
        return 0
    for doc in docs:
        _print_structure(doc)
    return 0


def _print_structure(doc: dict[str, Any]) -> None:
    import numpy as np

    atoms = doc.get("atoms") or {}
    print(f"structure {doc['key']}  (campaign {doc.get('campaign')})")
    print(
        f"  status      {doc.get('status')}" + (f" ({doc['reason']})" if doc.get("reason") else "")
    )
    print(f"  iteration   {doc.get('iteration')}")
    print(f"  formula     {doc.get('formula')}  ({doc.get('n_atoms')} atoms)")
    cell = np.asarray(atoms.get("cell_A", np.zeros((3, 3))), float)
    print(f"  cell (Å)    {np.round(cell, 4).tolist()}  pbc {atoms.get('pbc')}")
    uncertainty = doc.get("uncertainty") or {}
    if uncertainty:
        print(
            f"  uncertainty max force deviation {_fmt(uncertainty.get('max_force_dev_eV_A'), '.4f')} "
            f"eV/Å, energy std {_fmt(uncertainty.get('energy_std_eV'), '.4f')} eV"
        )
    committee = doc.get("committee") or {}
    if committee.get("energy_eV") is not None:
        print(f"  committee   mean energy {committee['energy_eV']:.6f} eV")
    origin = {k: v for k, v in (doc.get("origin") or {}).items() if k != "model_ids"}
    print(f"  origin      {json.dumps(origin, default=str)}")
    print(f"  created     {doc.get('created')}  updated {doc.get('updated')}")
    labels = doc.get("labels") or []
    if not labels:
        print("  labels      none")
    for label in labels:
        used = " (used)" if label.get("_id") == doc.get("label_id") else ""
        head = f"  label{used}  {label.get('code', '?')} parameters {str(label.get('parameters_hash'))[:12]}"
        if not label.get("ok"):
            print(f"{head}  FAILED: {label.get('error')}")
            continue
        n_atoms = doc.get("n_atoms") or 1
        forces = np.asarray(label.get("forces_eV_A") or np.zeros((0, 3)), float)
        fmax = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else float("nan")
        print(
            f"{head}  energy {label['energy_eV']:.6f} eV ({label['energy_eV'] / n_atoms:.6f} "
            f"eV/atom), max |F| {fmax:.4f} eV/Å"
        )
        if label.get("stress_eV_A3") is not None:
            stress = np.asarray(label["stress_eV_A3"], float).reshape(-1)
            print(f"              stress (eV/Å³) {np.round(stress, 6).tolist()}")
        print(
            f"              wall {_fmt(label.get('wall_s'), '.1f')} s on {_fmt(label.get('cores'), 'd')} "
            f"cores, host {label.get('host', '-')}, campaign {label.get('campaign')} "
            f"iteration {label.get('iteration')}"
        )


def _cmd_export(args: argparse.Namespace) -> int:
    query = _query(args, None)
    db = _open(args)
    count = export_atoms(db.atoms(query), args.out, args.format)
    print(f"wrote {count} structures to {args.out} ({args.format})")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    db = _open(args)
    stats = db.stats(args.campaign)
    if args.json:
        print(_json_line(stats))
        return 0
    print(f"store {stats['store']}" + (f", campaign {args.campaign}" if args.campaign else ""))
    print(f"structures      {stats['n_structures']}")
    print(
        "per status      " + (" ".join(f"{k}={v}" for k, v in stats["per_status"].items()) or "-")
    )
    print(
        "per iteration   "
        + (" ".join(f"{k}={v}" for k, v in stats["per_iteration"].items()) or "-")
    )
    print(
        "per element     " + (" ".join(f"{k}={v}" for k, v in stats["per_element"].items()) or "-")
    )
    print(f"labels          {stats['labels_ok']} ok, {stats['labels_failed']} failed")
    print(
        f"DFT cost        {stats['dft_core_hours']:.2f} core-hours "
        f"({stats['dft_wall_hours']:.2f} wall-hours)"
    )
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help=_STORE_HELP)
    parser.add_argument(
        "--timeout-s", type=float, default=5.0, help="how long to wait for the server (s)"
    )


def _add_filters(parser: argparse.ArgumentParser, limit_help: str) -> None:
    parser.add_argument("--campaign", help="campaign name")
    parser.add_argument(
        "--formula",
        help="formula in any order; coprime counts (AlCu3, Cu) match the reduced formula, "
        "others (Cu4) the cell's formula",
    )
    parser.add_argument("--elements", help="comma-separated symbols the structure must all contain")
    parser.add_argument("--iteration", type=int, help="iteration that first saw the structure")
    parser.add_argument(
        "--status",
        action="append",
        help="status (repeat or comma-separate): seed, explored, accurate, candidate, "
        "unphysical, selected, labeled, failed, rejected",
    )
    parser.add_argument(
        "--min-uncertainty", type=float, help="committee max force deviation ≥ this (eV/Å)"
    )
    parser.add_argument(
        "--max-uncertainty", type=float, help="committee max force deviation ≤ this (eV/Å)"
    )
    parser.add_argument(
        "--energy-range",
        metavar="MIN:MAX",
        help="DFT energy per atom in eV/atom (total energy / n_atoms); either side may be "
        "empty; write --energy-range=-4.1:-3.9 for negative values",
    )
    parser.add_argument(
        "--labeled-only", action="store_true", help="only structures with a successful DFT label"
    )
    parser.add_argument("--limit", type=int, help=limit_help)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alflow db`` and its subcommands to the ``alflow`` parser."""
    db = subparsers.add_parser(
        "db", help="query the database of computed structures (find, show, export, stats)"
    )
    sub = db.add_subparsers(dest="db_command", required=True)

    campaigns = sub.add_parser("campaigns", help="campaigns with their status and counts")
    _add_common(campaigns)
    campaigns.add_argument("--json", action="store_true", help="JSON lines")
    campaigns.set_defaults(func=_cmd_campaigns)

    find = sub.add_parser("find", help="structures matching filters (table, or JSON lines)")
    _add_filters(find, f"at most this many (default {_DEFAULT_LIMIT}; 0: all)")
    _add_common(find)
    find.add_argument("--json", action="store_true", help="one JSON object per line")
    find.set_defaults(func=_cmd_find)

    show = sub.add_parser("show", help="one structure with its labels and provenance")
    show.add_argument("key", help="structure key or a unique prefix of it")
    show.add_argument("--campaign", help="only this campaign's record")
    _add_common(show)
    show.add_argument("--json", action="store_true", help="full documents as JSON lines")
    show.set_defaults(func=_cmd_show)

    export = sub.add_parser("export", help="write matching structures to extxyz or pymatgen JSON")
    export.add_argument("out", help="output file")
    export.add_argument(
        "--format", choices=("extxyz", "json"), default="extxyz", help="file format"
    )
    _add_filters(export, "at most this many (default: all)")
    _add_common(export)
    export.set_defaults(func=_cmd_export)

    stats = sub.add_parser("stats", help="counts per status/iteration/element and DFT core-hours")
    stats.add_argument("--campaign", help="one campaign (default: all)")
    _add_common(stats)
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(func=_cmd_stats)
