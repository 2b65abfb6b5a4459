"""How a :class:`~alflow.query.filters.StructureQuery` is answered: pushed down to the server.

:class:`MongoEngine` sends each query to the server as one indexed filter
(``find``), and for an energy range as an aggregation that joins each
matching structure to its label through ``label_id`` (``labels._id``,
always indexed) after the indexed ``$match``. Counts and per-status,
per-iteration and per-element figures are ``count_documents`` and
``$group`` on the server; nothing is read into this process to be filtered.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from alflow.query.filters import StructureQuery

__all__ = ["ENERGY_FIELD", "MongoEngine"]

log = logging.getLogger(__name__)

#: Computed field added to results of an energy-range query (eV/atom).
ENERGY_FIELD = "energy_per_atom_eV"


def _core_seconds_expression() -> dict[str, Any]:
    return {"$multiply": [{"$ifNull": ["$wall_s", 0]}, {"$ifNull": ["$cores", 1]}]}


class MongoEngine:
    """Queries through pymongo, answered by the server on its indexes.

    Parameters
    ----------
    db
        A pymongo ``Database`` (alflow's database on the server).
    """

    name = "mongo"

    def __init__(self, db: Any) -> None:
        self.db = db

    def iter_structures(
        self, query: StructureQuery, fields: Sequence[str] | None
    ) -> Iterator[dict[str, Any]]:
        """Projected structure documents matching ``query``, lazily (server order)."""
        flt = query.mongo_filter()
        projection = None if fields is None else dict.fromkeys(fields, 1)
        if not query.has_energy_range:
            cursor = self.db["structures"].find(flt, projection)
            if query.limit:
                cursor = cursor.limit(query.limit)
            yield from cursor
            return
        pipeline: list[dict[str, Any]] = [
            {"$match": flt},
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
            {"$match": {ENERGY_FIELD: query.energy_bounds()}},
        ]
        if query.limit:
            pipeline.append({"$limit": query.limit})
        if projection is not None:
            pipeline.append({"$project": {**projection, ENERGY_FIELD: 1}})
        else:
            pipeline.append({"$project": {"_label": 0}})
        yield from self.db["structures"].aggregate(pipeline)

    def count(self, query: StructureQuery) -> int:
        """How many structures match (``limit`` ignored)."""
        if not query.has_energy_range:
            return int(self.db["structures"].count_documents(query.mongo_filter()))
        unlimited = StructureQuery(**{**_fields_of(query), "limit": None})
        return sum(1 for _ in self.iter_structures(unlimited, ["_id"]))

    def labels_by_id(
        self, ids: Iterable[Any], fields: Sequence[str] | None = None
    ) -> dict[Any, dict[str, Any]]:
        """Label documents by ``_id``."""
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return {}
        projection = None if fields is None else dict.fromkeys(fields, 1)
        return {d["_id"]: d for d in self.db["labels"].find({"_id": {"$in": wanted}}, projection)}

    def group_counts(self, flt: dict[str, Any], field: str, unwind: bool = False) -> Counter[Any]:
        """Number of structures matching ``flt`` per value of ``field``."""
        pipeline: list[dict[str, Any]] = [{"$match": flt}]
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


def _fields_of(query: StructureQuery) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(query, f.name) for f in fields(query) if not f.name.startswith("_")}
