"""Python API over the database of computed structures (for notebooks and scripts).

Examples
--------
.. code-block:: python

    from alflow.query import StructureQuery, open_database

    db = open_database("alflow-store")                 # or "mongodb://user:pw@host/"
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
from typing import Any

import numpy as np
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from alflow.errors import StoreError
from alflow.query.filters import StructureQuery
from alflow.settings import load_settings
from alflow.store import Store, connect
from alflow.store.connection import Connection
from alflow.store.query_filters import ENERGY_FIELD, MongoEngine
from alflow.structures import atoms_from_doc, labeled_atoms

__all__ = ["Database", "connect_reader", "open_database"]

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


def connect_reader(
    store: str, *, timeout_s: float = 10.0, settings: Any | None = None
) -> Connection:
    """Connect to an existing store to read it (``alflow db``, ``report``, ``webgui``).

    Like :func:`alflow.store.connect` (a store directory's local server is
    started, or found running while a campaign uses it), except that a
    reader never creates a store: a directory without the server's data
    (``db/``) is an error. Nothing is written, no indexes are created.

    Parameters
    ----------
    store
        A store directory or a ``mongodb://`` URI.
    timeout_s
        How long to wait for the server.
    settings
        Local server program and port (default: from the environment).

    Raises
    ------
    StoreError
        No store there, an unreachable server (password masked), or a
        one-file store of an older alflow (with the import command).
    """
    return connect(store, timeout_s=timeout_s, settings=settings, must_exist=True)


def open_database(
    store: str | None = None,
    *,
    db_name: str | None = None,
    timeout_s: float = 5.0,
    settings: Any | None = None,
) -> Database:
    """Open the database of a store for queries (read-only: nothing is written).

    Parameters
    ----------
    store
        A store directory (default ``alflow-store``; its local server is
        started, or found running) or a ``mongodb://`` URI. None: the
        ``store`` setting (``ALFLOW_STORE``).
    db_name
        The alflow database name; None: the ``store_name`` setting
        (``ALFLOW_STORE_NAME``, default ``alflow``).
    timeout_s
        How long to wait for the server.
    settings
        :class:`~alflow.settings.Settings` (default: read from the environment).

    Returns
    -------
    Database

    Raises
    ------
    StoreError
        No store at that path, or an unreachable server (password masked).
    """
    if settings is None:
        settings = load_settings()
    store = settings.store if store is None else store
    connection = connect_reader(store, timeout_s=timeout_s, settings=settings)
    db = connection.client[settings.store_name if db_name is None else db_name]
    log.debug("opened %s", connection.display)
    return Database(connection, Store(db), MongoEngine(db))


class Database:
    """Queries over one store's structures and labels.

    Use :func:`open_database` to make one.
    """

    def __init__(self, connection: Connection, store: Store, engine: MongoEngine) -> None:
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
        if self.store.has_campaign(campaign, with_structures=True):
            return
        known = ", ".join(sorted(self.store.known_campaign_names())) or "none"
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
        docs = self.store.structures_by_key_prefix(text, campaign)
        keys = sorted({d["key"] for d in docs})
        if not docs:
            where = f" in campaign '{campaign}'" if campaign else ""
            raise StoreError(f"no structure with key {key}{where} in {self.display}")
        if len(keys) > 1:
            raise StoreError(
                f"key prefix '{key}' matches several structures: {', '.join(keys[:5])}"
            )
        labels = self.store.labels_of(keys[0])
        for doc in docs:
            doc["labels"] = labels
        return docs

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its status and counts of structures per status and of labels."""
        per_status = self.engine.campaign_status_counts()
        names = self.store.campaign_names()
        names += sorted(set(per_status) - set(names), key=str)
        out = []
        for name in names:
            doc = self.store.campaign_summary(name) or {}
            counts = per_status.get(name, {})
            totals = self.engine.label_totals(name)
            last = self.store.last_iteration(name)
            out.append(
                {
                    "name": name,
                    "status": doc.get("status"),
                    "reason": doc.get("reason"),
                    "created": doc.get("created"),
                    "updated": doc.get("updated"),
                    "last_iteration": last,
                    "n_structures": int(sum(counts.values())),
                    "per_status": dict(sorted(counts.items(), key=lambda kv: str(kv[0]))),
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
        per_status = self.engine.group_counts(campaign, "status")
        per_iteration = self.engine.group_counts(campaign, "iteration")
        per_element = self.engine.group_counts(campaign, "elements", unwind=True)
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
        """Close the client."""
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
