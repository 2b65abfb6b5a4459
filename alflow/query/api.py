"""Python API over the database of computed structures (for notebooks and scripts).

Examples
--------
.. code-block:: python

    from alflow.query import StructureQuery, open_database

    db = open_database("alflow-store.bson")          # or "mongodb://user:pw@host/"
    q = StructureQuery(campaign="cu-emt", status="labeled", max_uncertainty_eV_A=0.3)
    for atoms in db.atoms(q):                          # lazily, one ase.Atoms at a time
        print(atoms.info["key"], atoms.get_potential_energy(), atoms.get_forces().shape)
    structures = list(db.structures(q))                # pymatgen Structure with properties
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from alflow.errors import StoreError
from alflow.query.engine import ENERGY_FIELD, MongoEngine, SnapshotEngine
from alflow.query.filters import StructureQuery
from alflow.query.indexes import ensure_query_indexes
from alflow.store import Store, connect, is_mongodb_uri, mask_uri
from alflow.store.connection import Connection
from alflow.structures import atoms_from_doc, labeled_atoms

__all__ = ["Database", "open_database"]

log = logging.getLogger(__name__)

#: Fields of a summary row (``find``).
SUMMARY_FIELDS = (
    "key",
    "campaign",
    "iteration",
    "status",
    "formula",
    "n_atoms",
    "uncertainty.max_force_dev_eV_A",
    "label_id",
    "reason",
    "origin.kind",
)
#: Fields needed to build Atoms / Structures.
ATOMS_FIELDS = (
    "key",
    "campaign",
    "iteration",
    "status",
    "formula",
    "n_atoms",
    "atoms",
    "uncertainty",
    "label_id",
)
LABEL_FIELDS = (
    "ok",
    "energy_eV",
    "forces_eV_A",
    "stress_eV_A3",
    "parameters_hash",
    "code",
)
_BATCH = 500


def open_database(
    store: str,
    *,
    writable: bool = False,
    db_name: str = "alflow",
    timeout_s: float = 5.0,
    engine: str = "auto",
) -> Database:
    """Open the database of a store for queries.

    Parameters
    ----------
    store
        A file path (embedded store) or a ``mongodb://`` URI.
    writable
        False (default): an embedded file is read as a fresh snapshot without
        taking its lock, so a running campaign is never disturbed. True: share
        this process's writable server (and create the extra query indexes).
    db_name
        The alflow database name (settings ``store_name``).
    timeout_s
        How long to wait for a MongoDB server.
    engine
        ``auto`` (snapshot index for a read-only embedded store, pymongo
        otherwise), ``mongo`` or ``snapshot``.

    Returns
    -------
    Database

    Raises
    ------
    StoreError
        Unreachable server (password masked), missing or unreadable file.
    """
    if engine not in ("auto", "mongo", "snapshot"):
        raise StoreError(f"unknown query engine '{engine}' (auto, mongo or snapshot)")
    if is_mongodb_uri(store) or writable:
        connection = connect(store, writable=writable, timeout_s=timeout_s)
    else:
        connection = _fresh_snapshot(store)
    db = connection.client[db_name]
    if writable:
        ensure_query_indexes(db)
    snapshot = not writable and not is_mongodb_uri(store)
    use_snapshot = engine == "snapshot" or (engine == "auto" and snapshot)
    chosen: MongoEngine | SnapshotEngine = MongoEngine(db)
    if use_snapshot:
        try:
            chosen = SnapshotEngine(db)
        except AttributeError as exc:  # a mongomock that stores documents differently
            log.warning("snapshot index unavailable (%s); using plain queries", exc)
    log.debug("opened %s with the %s engine", mask_uri(store), chosen.name)
    return Database(connection, Store(db), chosen)


def _fresh_snapshot(store: str) -> Connection:
    """Read an embedded store file into a new, unshared, read-only mongomock server.

    The file is read directly (the format of :mod:`alflow.store.embedded`),
    without the writer's lock, and every document is inserted *before* the
    indexes are created: mongomock checks a unique index on each insert by
    scanning the collection, so inserting into an indexed collection is
    quadratic (hours for 100,000 structures), while creating the index
    afterwards takes milliseconds.
    """
    import bson
    import mongomock
    import mongomock.gridfs

    path = Path(store).resolve()
    if not path.exists():
        raise StoreError(f"no alflow store at {path} (run a campaign first, or pass --store)")
    mongomock.gridfs.enable_gridfs_integration()
    client: Any = mongomock.MongoClient()
    indexes: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    where: tuple[str, str] | None = None
    try:
        with open(path, "rb") as handle:
            records = bson.decode_file_iter(handle)
            header = next(records, None)
            if header is None or header.get("format") != "alflow-embedded-store":
                raise StoreError(f"{path} is not an alflow embedded store")
            for record in records:
                if "doc" not in record:
                    indexes.append(record)
                    continue
                target = (record["db"], record["coll"])
                if target != where or len(batch) >= 10_000:
                    if batch and where is not None:
                        client[where[0]][where[1]].insert_many(batch)
                    batch, where = [], target
                batch.append(record["doc"])
    except (OSError, bson.errors.BSONError) as exc:
        raise StoreError(f"cannot read embedded store {path}: {exc}") from None
    if batch and where is not None:
        client[where[0]][where[1]].insert_many(batch)
    for record in indexes:
        collection = client[record["db"]][record["coll"]]
        for name, spec in record["indexes"].items():
            if name != "_id_":
                options = {k: v for k, v in spec.items() if k in ("unique", "sparse")}
                collection.create_index([tuple(k) for k in spec["key"]], name=name, **options)
    log.debug("read-only snapshot of %s loaded", path)
    return Connection(client=client, store=str(path))


class Database:
    """Queries over one store's structures and labels.

    Use :func:`open_database` to make one.
    """

    def __init__(self, connection: Connection, store: Store, engine: MongoEngine | SnapshotEngine):
        self.connection = connection
        self.store = store
        self.engine = engine

    @property
    def display(self) -> str:
        """Where the data lives, password masked."""
        return self.connection.display

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _query(query: StructureQuery | None, filters: dict[str, Any]) -> StructureQuery:
        if query is None:
            return StructureQuery(**filters)
        return replace(query, **filters) if filters else query

    def check_campaign(self, campaign: str | None) -> None:
        """StoreError if ``campaign`` is given and unknown to this store."""
        if campaign is None:
            return
        if self.store.campaigns.find_one({"name": campaign}, {"_id": 1}) is not None:
            return
        if self.store.structures.find_one({"campaign": campaign}, {"_id": 1}) is not None:
            return
        names = set(self.store.campaigns.distinct("name"))
        names |= set(self.store.structures.distinct("campaign"))
        known = ", ".join(sorted(str(n) for n in names)) or "none"
        raise StoreError(f"no campaign '{campaign}' in {self.display} (campaigns: {known})")

    def _docs(self, query: StructureQuery, fields: Sequence[str] | None) -> Iterator[dict]:
        self.check_campaign(query.campaign)
        return self.engine.iter_structures(query, fields)

    def _with_labels(
        self, docs: Iterator[dict[str, Any]], label_fields: Sequence[str] | None
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Pairs (structure, its label or None), fetching labels in batches."""
        while True:
            batch = list(islice(docs, _BATCH))
            if not batch:
                return
            labels = self.engine.labels_by_id([d.get("label_id") for d in batch], label_fields)
            for doc in batch:
                yield doc, labels.get(doc.get("label_id"))

    # ------------------------------------------------------------------ queries
    def find(self, query: StructureQuery | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """Summary rows of the matching structures, lazily.

        Parameters
        ----------
        query
            The filters; keyword arguments build or override one
            (``db.find(campaign="x", status="labeled")``).

        Yields
        ------
        dict
            ``key, campaign, iteration, status, formula, n_atoms,
            max_force_dev_eV_A`` (eV/Å or None), ``energy_per_atom_eV`` (DFT
            energy / n_atoms, None without a successful label), ``label_ok``,
            ``origin`` (kind), ``reason``.
        """
        q = self._query(query, filters)
        for doc, label in self._with_labels(self._docs(q, SUMMARY_FIELDS), ("ok", "energy_eV")):
            energy = doc.get(ENERGY_FIELD)
            if energy is None and label is not None and label.get("ok") and doc.get("n_atoms"):
                energy = label["energy_eV"] / doc["n_atoms"]
            yield {
                "key": doc.get("key"),
                "campaign": doc.get("campaign"),
                "iteration": doc.get("iteration"),
                "status": doc.get("status"),
                "formula": doc.get("formula"),
                "n_atoms": doc.get("n_atoms"),
                "max_force_dev_eV_A": (doc.get("uncertainty") or {}).get("max_force_dev_eV_A"),
                "energy_per_atom_eV": energy,
                "label_ok": None if label is None else bool(label.get("ok")),
                "origin": (doc.get("origin") or {}).get("kind"),
                "reason": doc.get("reason"),
            }

    def count(self, query: StructureQuery | None = None, **filters: Any) -> int:
        """Number of matching structures (``limit`` ignored)."""
        q = self._query(query, filters)
        self.check_campaign(q.campaign)
        return self.engine.count(q)

    def atoms(self, query: StructureQuery | None = None, **filters: Any) -> Iterator[Atoms]:
        """The matching structures as ``ase.Atoms``, lazily.

        A structure with a successful label carries it in a
        ``SinglePointCalculator`` (energy in eV, forces in eV/Å, stress in
        eV/Å³, Voigt order as ``Atoms.get_stress()``). ``atoms.info`` holds
        ``key``, ``campaign``, ``iteration``, ``status``, ``formula`` and, when
        known, ``max_force_dev_eV_A`` (eV/Å), ``energy_std_eV``,
        ``parameters_hash`` and ``code`` of the label.
        """
        q = self._query(query, filters)
        for doc, label in self._with_labels(self._docs(q, ATOMS_FIELDS), LABEL_FIELDS):
            yield doc_to_atoms(doc, label)

    def structures(self, query: StructureQuery | None = None, **filters: Any) -> Iterator[Any]:
        """The matching structures as pymatgen ``Structure`` (``Molecule`` without a cell).

        ``properties`` holds ``key, campaign, iteration, status`` and, when
        known, ``max_force_dev_eV_A`` (eV/Å), ``energy_eV``,
        ``energy_per_atom_eV``, ``stress_eV_A3`` (Voigt, ASE order) and
        ``parameters_hash``; the site property ``forces_eV_A`` holds forces.
        """
        for atoms in self.atoms(query, **filters):
            yield atoms_to_pymatgen(atoms)

    def show(self, key: str, campaign: str | None = None) -> list[dict[str, Any]]:
        """Every structure document with this key (or unique key prefix) and all its labels.

        Returns
        -------
        list of dict
            One per campaign that saw the structure: the full document with
            ``labels`` (every label of the key: all parameter sets, failed ones too).

        Raises
        ------
        StoreError
            No structure with that key, or a prefix that matches several keys.
        """
        self.check_campaign(campaign)
        text = key.strip().lower()
        if not text or any(c not in "0123456789abcdef" for c in text):
            raise StoreError(
                f"'{key}' is not a structure key (hex digits, e.g. from 'alflow db find')"
            )
        flt: dict[str, Any] = {"key": text} if len(text) >= 24 else {"key": {"$regex": f"^{text}"}}
        if campaign is not None:
            flt["campaign"] = campaign
        docs = list(self.store.structures.find(flt).limit(50))
        keys = sorted({d["key"] for d in docs})
        if not docs:
            where = f" in campaign '{campaign}'" if campaign else ""
            raise StoreError(f"no structure with key {key}{where} in {self.display}")
        if len(keys) > 1:
            raise StoreError(
                f"key prefix '{key}' matches several structures: {', '.join(keys[:5])}"
            )
        labels = list(self.store.labels.find({"structure_key": keys[0]}))
        for doc in docs:
            doc["labels"] = labels
        return docs

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its status and counts of structures per status and of labels."""
        per_status = self.engine.campaign_status_counts()
        names = [d["name"] for d in self.store.campaigns.find({}, {"name": 1}).sort("created", 1)]
        names += sorted(set(per_status) - set(names))
        out = []
        for name in names:
            doc = self.store.campaigns.find_one({"name": name}, {"config": 0}) or {}
            counts = per_status.get(name, {})
            totals = self.engine.label_totals(name)
            last = self.store.iterations.find_one(
                {"campaign": name}, {"iteration": 1}, sort=[("iteration", -1)]
            )
            out.append(
                {
                    "name": name,
                    "status": doc.get("status"),
                    "reason": doc.get("reason"),
                    "created": doc.get("created"),
                    "updated": doc.get("updated"),
                    "last_iteration": None if last is None else last.get("iteration"),
                    "n_structures": int(sum(counts.values())),
                    "per_status": dict(sorted(counts.items())),
                    "labels_ok": int(totals["ok"]),
                    "labels_failed": int(totals["failed"]),
                    "dft_core_hours": totals["core_s"] / 3600.0,
                }
            )
        return out

    def stats(self, campaign: str | None = None) -> dict[str, Any]:
        """Counts per status, per iteration, per element, and DFT cost.

        Returns
        -------
        dict
            ``n_structures``, ``per_status``, ``per_iteration``,
            ``per_element`` (structures containing the element), ``labels_ok``,
            ``labels_failed`` (labels computed by the campaign; reused labels
            are not counted again), ``dft_core_hours`` = sum(wall_s × cores) /
            3600 and ``dft_wall_hours`` over those labels.
        """
        self.check_campaign(campaign)
        flt = {} if campaign is None else {"campaign": campaign}
        per_status = self.engine.group_counts(flt, "status")
        per_iteration = self.engine.group_counts(flt, "iteration")
        per_element = self.engine.group_counts(flt, "elements", unwind=True)
        totals = self.engine.label_totals(campaign)
        return {
            "store": self.display,
            "campaign": campaign,
            "n_structures": int(sum(per_status.values())),
            "per_status": dict(sorted(per_status.items(), key=lambda kv: str(kv[0]))),
            "per_iteration": dict(
                sorted(per_iteration.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
            ),
            "per_element": dict(sorted(per_element.items())),
            "labels_ok": int(totals["ok"]),
            "labels_failed": int(totals["failed"]),
            "dft_core_hours": totals["core_s"] / 3600.0,
            "dft_wall_hours": totals["wall_s"] / 3600.0,
        }

    def close(self) -> None:
        """Close the client (a snapshot is simply dropped)."""
        self.connection.client.close()


def voigt_stress(stress: Any) -> np.ndarray | None:
    """Stress as 6 Voigt components (xx, yy, zz, yz, xz, xy) in eV/Å³, from 6 or 3×3."""
    if stress is None:
        return None
    array = np.asarray(stress, dtype=float)
    if array.shape == (3, 3):
        return full_3x3_to_voigt_6_stress(array)
    if array.shape == (9,):
        return full_3x3_to_voigt_6_stress(array.reshape(3, 3))
    if array.shape == (6,):
        return array
    raise StoreError(f"stress of shape {array.shape} is neither 6 Voigt components nor 3×3")


def doc_to_atoms(doc: dict[str, Any], label: dict[str, Any] | None) -> Atoms:
    """``ase.Atoms`` of a structure document, with its label if successful."""
    atoms = atoms_from_doc(doc["atoms"])
    info: dict[str, Any] = {
        "key": doc.get("key"),
        "campaign": doc.get("campaign"),
        "iteration": doc.get("iteration"),
        "status": doc.get("status"),
        "formula": doc.get("formula"),
    }
    uncertainty = doc.get("uncertainty") or {}
    for name in ("max_force_dev_eV_A", "energy_std_eV"):
        if uncertainty.get(name) is not None:
            info[name] = float(uncertainty[name])
    if label is not None and label.get("ok"):
        atoms = labeled_atoms(
            atoms, label["energy_eV"], label["forces_eV_A"], voigt_stress(label.get("stress_eV_A3"))
        )
        for name in ("parameters_hash", "code"):
            if label.get(name) is not None:
                info[name] = label[name]
    atoms.info.update({k: v for k, v in info.items() if v is not None})
    return atoms


def atoms_to_pymatgen(atoms: Atoms) -> Any:
    """pymatgen ``Structure`` (``Molecule`` without a cell) with labels as properties.

    A cell with some non-periodic directions keeps them in ``Lattice.pbc``.
    """
    from pymatgen.core import Lattice, Molecule, Structure

    properties: dict[str, Any] = dict(atoms.info)
    site_properties: dict[str, Any] = {}
    if atoms.calc is not None:
        results = atoms.calc.results
        if "energy" in results:
            properties["energy_eV"] = float(results["energy"])
            properties["energy_per_atom_eV"] = float(results["energy"]) / len(atoms)
        if "stress" in results:
            properties["stress_eV_A3"] = [float(x) for x in voigt_stress(results["stress"])]
        if "forces" in results:
            site_properties["forces_eV_A"] = np.asarray(results["forces"], float).tolist()
    species = atoms.get_chemical_symbols()
    positions = np.asarray(atoms.positions, float)
    if atoms.cell.volume > 0:
        return Structure(
            Lattice(np.asarray(atoms.cell, float), pbc=tuple(bool(p) for p in atoms.pbc)),
            species,
            positions,
            coords_are_cartesian=True,
            site_properties=site_properties or None,
            properties=properties,
        )
    return Molecule(
        species, positions, site_properties=site_properties or None, properties=properties
    )
