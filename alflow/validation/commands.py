"""``alflow validate``: judge a campaign's final committee (registered by alflow.cli).

Examples
--------
.. code-block:: console

    $ alflow validate --campaign quickstart-emt
    $ alflow validate --campaign al-gpaw --store mongodb://host/ --out al-validation --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from alflow.errors import ConfigError
from alflow.potential.load import final_record
from alflow.settings import load_settings
from alflow.steps.context import StepContext
from alflow.store import open_reader
from alflow.validation.run import validate_potential
from alflow.validation.summary import format_validation

__all__ = ["register"]

_STORE_HELP = (
    "store: a store directory (default alflow-store; its local server is started or found) "
    "or a mongodb:// URI; env ALFLOW_STORE"
)


def _out_dir(args: argparse.Namespace) -> Path:
    """The output directory: refused when it holds files, unless --force."""
    out = Path(args.out) if args.out else Path(f"{args.campaign}-validation")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise ConfigError(
            f"--out {out} is not empty; choose another directory or pass --force to write into it"
        )
    return out


def _cmd_validate(args: argparse.Namespace) -> int:
    settings = load_settings(overrides={"store": args.store})
    store = open_reader(settings=settings)
    final_record(store, args.campaign)  # unknown campaign, no final fit: one clear line
    out = _out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    ctx = StepContext(
        store=store,
        config=store.campaign_config(args.campaign),
        settings=settings,
        workdir=out.resolve(),
    )
    result = validate_potential(ctx, out_dir=out)
    print(format_validation(result))
    if args.json:
        print(json.dumps(_json_view(result), default=str))
    return 0


def _json_view(result: dict[str, Any]) -> dict[str, Any]:
    """The result for ``--json``: the five checks first, then the rest."""
    keys = ["dimers", "eos", "md_stability", "holdout", "transfer", "summary"]
    return {
        **{k: result.get(k) for k in keys},
        **{k: v for k, v in result.items() if k not in keys},
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alflow validate`` to the ``alflow`` parser."""
    validate = subparsers.add_parser(
        "validate",
        help="judge a campaign's final committee: dimers, E(V), MD stability, held-out, transfer",
        description="Validate the final committee of a campaign (docs/validation.md). Reference "
        "calculations are stored as structures of status 'validation' (never trained on) and "
        "reused by the next validation.",
    )
    validate.add_argument("--campaign", required=True, help="campaign name")
    validate.add_argument("--store", help=_STORE_HELP)
    validate.add_argument(
        "--out",
        help="directory for figures, validation.json and the reference calculations "
        "(default <campaign>-validation; refused if not empty)",
    )
    validate.add_argument("--force", action="store_true", help="write into a non-empty --out")
    validate.add_argument(
        "--json", action="store_true", help="also print the whole result as one JSON line (last)"
    )
    validate.set_defaults(func=_cmd_validate)
