"""CLI subcommands of alflow.cluster (registered by alflow.cli)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `alflow` parser."""
