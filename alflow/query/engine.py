"""Two ways to answer a :class:`~alflow.query.filters.StructureQuery`.

:class:`MongoEngine`
    Plain pymongo on any server (a real MongoDB, or a live mongomock one):
    ``find`` with the indexed filter, and for an energy range an aggregation
    that joins each matching structure to its label through ``label_id``
    (``labels._id``, always indexed) after the indexed ``$match``.
:class:`SnapshotEngine`
    For a read-only embedded store. mongomock answers every query with a
    Python scan that copies each matching document (about 6 µs per document
    and condition, plus the copies: 0.2–0.8 s per query on 100,000
    structures, whatever the ``limit``). A read-only snapshot never changes,
    so this engine reads the documents once, keeps the indexed fields as
    numpy columns and answers a query with vectorised comparisons, then
    copies only the requested fields of the rows it returns.

Both yield projected structure documents in the same shape.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from alflow.query.filters import StructureQuery

__all__ = ["ENERGY_FIELD", "MongoEngine", "SnapshotEngine", "project"]

log = logging.getLogger(__name__)

#: Computed field added to results of an energy-range query (eV/atom).
ENERGY_FIELD = "energy_per_atom_eV"


def project(doc: dict[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """Deep copy of the listed (dotted) fields of ``doc``; all fields if None."""
    if fields is None:
        return copy.deepcopy(doc)
    out: dict[str, Any] = {"_id": doc.get("_id")}
    for path in fields:
        head, _, rest = path.partition(".")
        if head not in doc:
            continue
        if not rest:
            out[head] = copy.deepcopy(doc[head])
            continue
        value: Any = doc[head]
        for part in rest.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            target = out.setdefault(head, {})
            parts = rest.split(".")
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = copy.deepcopy(value)
    return out


def _core_seconds_expression() -> dict[str, Any]:
    return {"$multiply": [{"$ifNull": ["$wall_s", 0]}, {"$ifNull": ["$cores", 1]}]}


class MongoEngine:
    """Queries through pymongo (index-backed on a real server).

    Parameters
    ----------
    db
        A pymongo (or mongomock) ``Database``.
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
            out.setdefault(d["_id"]["c"], Counter())[d["_id"]["s"]] = int(d["n"])
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


class SnapshotEngine:
    """Column index over a read-only mongomock snapshot.

    Parameters
    ----------
    db
        A mongomock ``Database`` that nothing writes to any more.

    Raises
    ------
    AttributeError
        This mongomock keeps its documents differently (the caller falls back
        to :class:`MongoEngine`).
    """

    name = "snapshot"

    def __init__(self, db: Any) -> None:
        self.db = db
        self._docs: list[dict[str, Any]] = list(db["structures"]._store.documents)
        self._labels: dict[Any, dict[str, Any]] = {
            d["_id"]: d for d in db["labels"]._store.documents
        }
        n = len(self._docs)
        self._campaign_codes: dict[Any, int] = {}
        self._status_codes: dict[Any, int] = {}
        self._formula_codes: dict[Any, int] = {}
        self._reduced_codes: dict[Any, int] = {}
        campaign = np.empty(n, np.int32)
        status = np.empty(n, np.int32)
        formula = np.empty(n, np.int32)
        reduced = np.empty(n, np.int32)
        iteration = np.full(n, -1, np.int64)
        uncertainty = np.full(n, np.nan)
        energy = np.full(n, np.nan)
        has_label = np.zeros(n, bool)
        element_rows: dict[str, list[int]] = {}
        setdefault = dict.setdefault
        for row, doc in enumerate(self._docs):
            campaign[row] = setdefault(
                self._campaign_codes, doc.get("campaign"), len(self._campaign_codes)
            )
            status[row] = setdefault(self._status_codes, doc.get("status"), len(self._status_codes))
            formula[row] = setdefault(
                self._formula_codes, doc.get("formula"), len(self._formula_codes)
            )
            reduced[row] = setdefault(
                self._reduced_codes, doc.get("reduced_formula"), len(self._reduced_codes)
            )
            it = doc.get("iteration")
            if isinstance(it, int):
                iteration[row] = it
            unc = doc.get("uncertainty")
            if isinstance(unc, dict) and unc.get("max_force_dev_eV_A") is not None:
                uncertainty[row] = unc["max_force_dev_eV_A"]
            for element in doc.get("elements") or ():
                element_rows.setdefault(element, []).append(row)
            label_id = doc.get("label_id")
            if label_id is not None:
                has_label[row] = True
                label = self._labels.get(label_id)
                if label is not None and label.get("ok") and doc.get("n_atoms"):
                    energy[row] = label["energy_eV"] / doc["n_atoms"]
        self._campaign, self._status, self._iteration = campaign, status, iteration
        self._formula, self._reduced = formula, reduced
        self._uncertainty, self._energy, self._has_label = uncertainty, energy, has_label
        self._elements = {e: np.asarray(rows, np.int64) for e, rows in element_rows.items()}
        log.debug("snapshot index over %d structures and %d labels", n, len(self._labels))

    # ------------------------------------------------------------------ matching
    def _codes_mask(
        self, column: np.ndarray, codes: dict[Any, int], values: Sequence[Any]
    ) -> np.ndarray:
        wanted = [codes[v] for v in values if v in codes]
        if not wanted:
            return np.zeros(len(column), bool)
        if len(wanted) == 1:
            return column == wanted[0]
        return np.isin(column, wanted)

    def mask(self, query: StructureQuery) -> np.ndarray:
        """Boolean mask over the snapshot's structures."""
        n = len(self._docs)
        mask = np.ones(n, bool)
        if query.campaign is not None:
            mask &= self._codes_mask(self._campaign, self._campaign_codes, [query.campaign])
        if query.iteration is not None:
            mask &= self._iteration == query.iteration
        if query.status:
            mask &= self._codes_mask(self._status, self._status_codes, query.status)
        if query.formula_match is not None:
            name, value = query.formula_match
            if name == "formula":
                mask &= self._codes_mask(self._formula, self._formula_codes, [value])
            else:
                mask &= self._codes_mask(self._reduced, self._reduced_codes, [value])
        for element in query.elements:
            element_mask = np.zeros(n, bool)
            element_mask[self._elements.get(element, np.empty(0, np.int64))] = True
            mask &= element_mask
        if query.has_uncertainty_range:
            with np.errstate(invalid="ignore"):
                if query.min_uncertainty_eV_A is not None:
                    mask &= self._uncertainty >= query.min_uncertainty_eV_A
                if query.max_uncertainty_eV_A is not None:
                    mask &= self._uncertainty <= query.max_uncertainty_eV_A
        if query.labeled_only:
            mask &= self._has_label
        if query.has_energy_range:
            with np.errstate(invalid="ignore"):
                if query.min_energy_eV_per_atom is not None:
                    mask &= self._energy >= query.min_energy_eV_per_atom
                if query.max_energy_eV_per_atom is not None:
                    mask &= self._energy <= query.max_energy_eV_per_atom
        return mask

    def rows(self, query: StructureQuery) -> np.ndarray:
        """Row numbers of the matches, in insertion order, at most ``limit``."""
        rows = np.flatnonzero(self.mask(query))
        return rows[: query.limit] if query.limit else rows

    def iter_structures(
        self, query: StructureQuery, fields: Sequence[str] | None
    ) -> Iterator[dict[str, Any]]:
        """Projected structure documents matching ``query``, lazily (insertion order)."""
        rows = self.rows(query)
        with_energy = query.has_energy_range
        for row in rows:
            doc = project(self._docs[row], fields)
            if with_energy:
                doc[ENERGY_FIELD] = float(self._energy[row])
            yield doc

    def count(self, query: StructureQuery) -> int:
        """How many structures match (``limit`` ignored)."""
        return int(self.mask(query).sum())

    def labels_by_id(
        self, ids: Iterable[Any], fields: Sequence[str] | None = None
    ) -> dict[Any, dict[str, Any]]:
        """Label documents by ``_id`` (copies)."""
        return {
            i: project(self._labels[i], fields) for i in ids if i is not None and i in self._labels
        }

    def group_counts(self, flt: dict[str, Any], field: str, unwind: bool = False) -> Counter[Any]:
        """Number of structures per value of ``field``; ``flt`` may only hold ``campaign``."""
        rows: Iterable[int] = range(len(self._docs))
        if "campaign" in flt:
            rows = np.flatnonzero(self._campaign == self._campaign_codes.get(flt["campaign"], -1))
        counts: Counter[Any] = Counter()
        for row in rows:
            value = self._docs[row].get(field)
            if unwind:
                counts.update(value or ())
            else:
                counts[value] += 1
        return counts

    def campaign_status_counts(self) -> dict[str, Counter[str]]:
        """Structures per (campaign, status)."""
        campaigns = {code: name for name, code in self._campaign_codes.items()}
        statuses = {code: name for name, code in self._status_codes.items()}
        out: dict[str, Counter[str]] = {}
        pairs, counts = np.unique(
            np.stack([self._campaign, self._status]), axis=1, return_counts=True
        )
        for (c, s), n in zip(pairs.T, counts, strict=True):
            out.setdefault(campaigns[int(c)], Counter())[statuses[int(s)]] = int(n)
        return out

    def label_totals(self, campaign: str | None) -> dict[str, float]:
        """Successful and failed labels and their core-seconds (labels computed by ``campaign``)."""
        totals = {"ok": 0.0, "failed": 0.0, "core_s": 0.0, "wall_s": 0.0}
        for label in self._labels.values():
            if campaign is not None and label.get("campaign") != campaign:
                continue
            totals["ok" if label.get("ok") is True else "failed"] += 1
            wall_s = float(label.get("wall_s") or 0.0)
            totals["core_s"] += wall_s * float(label.get("cores") or 1)
            totals["wall_s"] += wall_s
        return totals
