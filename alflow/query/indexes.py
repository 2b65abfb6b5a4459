"""Indexes the query filters use beyond those :meth:`alflow.store.Store.ensure_indexes` creates.

These belong in ``Store.ensure_indexes``; until they move there,
:func:`ensure_query_indexes` creates them (idempotent) whenever a store is
opened writable through :func:`alflow.query.open_database`.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING

__all__ = ["QUERY_INDEXES", "ensure_query_indexes"]

log = logging.getLogger(__name__)

#: (collection, keys) of the extra indexes.
QUERY_INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    # --formula with a reduced formula (AlCu3) matches structures.reduced_formula.
    ("structures", [("reduced_formula", ASCENDING)]),
    # db find/export --campaign C --formula F: one index instead of campaign then filter.
    ("structures", [("campaign", ASCENDING), ("reduced_formula", ASCENDING)]),
    # db stats / campaigns: labels computed by one campaign (core-hours).
    ("labels", [("campaign", ASCENDING), ("ok", ASCENDING)]),
)


def ensure_query_indexes(db: Any) -> None:
    """Create the extra query indexes on a pymongo ``Database`` (idempotent)."""
    for collection, keys in QUERY_INDEXES:
        db[collection].create_index(keys)
    log.debug("query indexes ensured on %s", getattr(db, "name", db))
