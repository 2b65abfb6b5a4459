"""A user's structure query (``alflow db``, the Python API) as Mongo filters, answered on the server.

:mod:`alflow.query.filters` parses and checks a
:class:`~alflow.query.filters.StructureQuery`; this module is the only place
that turns one into Mongo: :func:`structure_filter` (one indexed filter on
``structures``) and :class:`MongoEngine`, which sends it as a ``find``, and for
an energy range as an aggregation that joins each matching structure to its
label through ``label_id`` (``labels._id``, always indexed) after the indexed
``$match``. Counts and per-status, per-iteration and per-element figures are
``count_documents`` and ``$group`` on the server; nothing is read into this
process to be filtered.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

__all__ = [
    "ENERGY_FIELD",
    "UNCERTAINTY_FIELD",
    "MongoEngine",
    "StructureQueryFields",
    "energy_bounds",
    "structure_filter",
]

log = logging.getLogger(__name__)

#: Computed field added to results of an energy-range query (eV/atom).
ENERGY_FIELD = "energy_per_atom_eV"
#: The structure field the uncertainty filters act on (eV/Å).
UNCERTAINTY_FIELD = "uncertainty.max_force_dev_eV_A"


class StructureQueryFields(Protocol):
    """What this module reads of a :class:`alflow.query.filters.StructureQuery` (a dataclass)."""

    campaign: str | None
    iteration: int | None
    status: tuple[str, ...]
    elements: tuple[str, ...]
    min_uncertainty_eV_A: float | None
    max_uncertainty_eV_A: float | None
    min_energy_eV_per_atom: float | None
    max_energy_eV_per_atom: float | None
    labeled_only: bool
    limit: int | None

    @property
    def formula_match(self) -> tuple[str, str] | None: ...

    @property
    def has_energy_range(self) -> bool: ...

    @property
    def has_uncertainty_range(self) -> bool: ...


def _bounds(low: float | None, high: float | None) -> dict[str, float]:
    bounds: dict[str, float] = {}
    if low is not None:
        bounds["$gte"] = float(low)
    if high is not None:
        bounds["$lte"] = float(high)
    return bounds


def energy_bounds(query: StructureQueryFields) -> dict[str, float]:
    """``{"$gte": min, "$lte": max}`` on energy per atom (eV/atom), bounds that are set."""
    return _bounds(query.min_energy_eV_per_atom, query.max_energy_eV_per_atom)


def structure_filter(query: StructureQueryFields) -> dict[str, Any]:
    """The pymongo filter on ``structures`` (everything but the energy range).

    Every clause is on an indexed field: ``campaign``/``iteration``/``status``
    (compound index), ``status``, ``formula``, ``reduced_formula`` (alone
    and with ``campaign``), ``elements`` (multikey) and
    ``uncertainty.max_force_dev_eV_A``: the indexes of
    :meth:`alflow.store.Store.ensure_indexes`.
    """
    flt: dict[str, Any] = {}
    if query.campaign is not None:
        flt["campaign"] = query.campaign
    if query.iteration is not None:
        flt["iteration"] = query.iteration
    if query.status:
        flt["status"] = query.status[0] if len(query.status) == 1 else {"$in": list(query.status)}
    if query.formula_match is not None:
        name, value = query.formula_match
        flt[name] = value
    if query.elements:
        flt["elements"] = (
            query.elements[0] if len(query.elements) == 1 else {"$all": list(query.elements)}
        )
    if query.has_uncertainty_range:
        flt[UNCERTAINTY_FIELD] = _bounds(query.min_uncertainty_eV_A, query.max_uncertainty_eV_A)
    if query.labeled_only or query.has_energy_range:
        flt["label_id"] = {"$ne": None}
    return flt


def _energy_pipeline(
    query: StructureQueryFields, projection: dict[str, int] | None
) -> list[dict[str, Any]]:
    """Indexed ``$match``, then each structure joined to its label and its energy per atom."""
    pipeline: list[dict[str, Any]] = [
        {"$match": structure_filter(query)},
        {
            "$lookup": {
                "from": "labels",
                "localField": "label_id",
                "foreignField": "_id",
                "as": "_label",
            }
        },
        {"$unwind": "$_label"},
        {"$match": {"_label.ok": True}},
        {"$addFields": {ENERGY_FIELD: {"$divide": ["$_label.energy_eV", "$n_atoms"]}}},
        {"$match": {ENERGY_FIELD: energy_bounds(query)}},
    ]
    if query.limit:
        pipeline.append({"$limit": query.limit})
    if projection is not None:
        pipeline.append({"$project": {**projection, ENERGY_FIELD: 1}})
    else:
        pipeline.append({"$project": {"_label": 0}})
    return pipeline


def _core_seconds_expression() -> dict[str, Any]:
    return {"$multiply": [{"$ifNull": ["$wall_s", 0]}, {"$ifNull": ["$cores", 1]}]}


class MongoEngine:
    """Structure queries through pymongo, answered by the server on its indexes.

    Parameters
    ----------
    db
        A pymongo ``Database`` (alflow's database on the server).
    """

    name = "mongo"

    def __init__(self, db: Any) -> None:
        self.db = db

    def iter_structures(
        self, query: StructureQueryFields, fields: Sequence[str] | None
    ) -> Iterator[dict[str, Any]]:
        """Projected structure documents matching ``query``, lazily (server order)."""
        projection = None if fields is None else dict.fromkeys(fields, 1)
        if not query.has_energy_range:
            cursor = self.db["structures"].find(structure_filter(query), projection)
            if query.limit:
                cursor = cursor.limit(query.limit)
            yield from cursor
            return
        yield from self.db["structures"].aggregate(_energy_pipeline(query, projection))

    def count(self, query: StructureQueryFields) -> int:
        """How many structures match (``limit`` ignored)."""
        if not query.has_energy_range:
            return int(self.db["structures"].count_documents(structure_filter(query)))
        return sum(1 for _ in self.iter_structures(replace(query, limit=None), ["_id"]))

    def labels_by_id(
        self, ids: Iterable[Any], fields: Sequence[str] | None = None
    ) -> dict[Any, dict[str, Any]]:
        """Label documents by ``_id``."""
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return {}
        projection = None if fields is None else dict.fromkeys(fields, 1)
        return {d["_id"]: d for d in self.db["labels"].find({"_id": {"$in": wanted}}, projection)}

    def group_counts(self, campaign: str | None, field: str, unwind: bool = False) -> Counter[Any]:
        """Number of structures (of ``campaign``; None: all) per value of ``field``."""
        match = {} if campaign is None else {"campaign": campaign}
        pipeline: list[dict[str, Any]] = [{"$match": match}]
        if unwind:
            pipeline.append({"$unwind": f"${field}"})
        pipeline.append({"$group": {"_id": f"${field}", "n": {"$sum": 1}}})
        return Counter({d["_id"]: int(d["n"]) for d in self.db["structures"].aggregate(pipeline)})

    def campaign_status_counts(self) -> dict[str, Counter[str]]:
        """Structures per (campaign, status)."""
        pipeline = [
            {"$group": {"_id": {"c": "$campaign", "s": "$status"}, "n": {"$sum": 1}}},
        ]
        out: dict[str, Counter[str]] = {}
        for d in self.db["structures"].aggregate(pipeline):
            # a missing field is left out of the group key (documents without a status)
            out.setdefault(d["_id"].get("c"), Counter())[d["_id"].get("s")] = int(d["n"])
        return out

    def label_totals(self, campaign: str | None) -> dict[str, float]:
        """Successful and failed labels and their core-seconds (labels computed by ``campaign``)."""
        match = {} if campaign is None else {"campaign": campaign}
        pipeline = [
            {"$match": match},
            {
                "$group": {
                    "_id": "$ok",
                    "n": {"$sum": 1},
                    "core_s": {"$sum": _core_seconds_expression()},
                    "wall_s": {"$sum": {"$ifNull": ["$wall_s", 0]}},
                }
            },
        ]
        totals = {"ok": 0.0, "failed": 0.0, "core_s": 0.0, "wall_s": 0.0}
        for d in self.db["labels"].aggregate(pipeline):
            totals["ok" if d["_id"] is True else "failed"] += d["n"]
            totals["core_s"] += float(d["core_s"] or 0.0)
            totals["wall_s"] += float(d["wall_s"] or 0.0)
        return totals
