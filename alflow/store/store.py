"""The alflow data store: the only code that reads or writes alflow's collections.

Collections (see docs/schema.md for every field):

``campaigns``
    One per campaign: the validated config, its hash, status and why it ended.
``structures``
    One per configuration seen by a campaign, unique on (campaign, key).
``labels``
    Reference (DFT) results, unique on (structure key, parameters hash), so
    labeling is idempotent and a label is reused across campaigns.
``models``
    One per committee member and iteration (iteration ``"final"``: the deploy
    committee of the final fit); the file lives in GridFS.
``iterations``
    The figures of each iteration.
``references``
    Isolated-atom energies per element and DFT parameter set (MACE E0s).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from alflow.config import CampaignConfig, config_hash
from alflow.errors import StoreError, TrainingError
from alflow.store.reads import StoreReads
from alflow.structures import atoms_from_doc, atoms_to_doc, labeled_atoms, pymatgen_dict
from alflow.workcache import sha256_file

__all__ = ["CLASSIFIED_STATUSES", "FINAL", "STATUSES", "Store", "make_model_id", "utcnow"]

log = logging.getLogger(__name__)

#: Statuses a structure goes through. ``seed``: labeled before iteration 0;
#: ``holdout``: labeled before iteration 0 as a test set, never trained on;
#: ``validation``: made and labeled by ``alflow validate``, never trained on;
#: ``explored``: saved by a walker, not yet classified; ``accurate`` /
#: ``candidate`` / ``unphysical``: below / inside / above the trust window;
#: ``selected``: queued for DFT; ``labeled`` / ``failed``: DFT done / failed;
#: ``rejected``: not sent (sanity check or duplicate, with the reason).
STATUSES = (
    "seed",
    "holdout",
    "validation",
    "explored",
    "accurate",
    "candidate",
    "unphysical",
    "selected",
    "labeled",
    "failed",
    "rejected",
)


#: Where a walker's frame can be once its iteration has been selected.
CLASSIFIED_STATUSES = STATUSES[STATUSES.index("accurate") :]


#: The ``iteration`` of the final fit's models and Workflow: the campaign's result.
FINAL = "final"


def make_model_id(campaign: str, iteration: int | str, member: int) -> str:
    """``<campaign>/itNNN/mMM``, or ``<campaign>/final/mMM`` for the final fit."""
    stage = FINAL if iteration == FINAL else f"it{int(iteration):03d}"
    return f"{campaign}/{stage}/m{member:02d}"


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(timezone.utc)


class Store(StoreReads):
    """alflow's collections on one pymongo-compatible database.

    Parameters
    ----------
    db
        A ``pymongo.database.Database`` (or mongomock's equivalent).
    """

    def __init__(self, db: Any) -> None:
        import gridfs

        self.db = db
        self.campaigns = db["campaigns"]
        self.structures = db["structures"]
        self.labels = db["labels"]
        self.models = db["models"]
        self.iterations = db["iterations"]
        self.references = db["references"]
        self.gridfs = gridfs.GridFS(db, collection="model_files")

    # ------------------------------------------------------------------ setup
    def ensure_indexes(self) -> None:
        """Create every index alflow's queries use (idempotent)."""
        self.campaigns.create_index([("name", ASCENDING)], unique=True)
        self.structures.create_index([("campaign", ASCENDING), ("key", ASCENDING)], unique=True)
        self.structures.create_index([("key", ASCENDING)])
        self.structures.create_index(
            [("campaign", ASCENDING), ("iteration", ASCENDING), ("status", ASCENDING)]
        )
        self.structures.create_index([("status", ASCENDING)])
        self.structures.create_index([("formula", ASCENDING)])
        self.structures.create_index([("reduced_formula", ASCENDING)])
        self.structures.create_index([("campaign", ASCENDING), ("reduced_formula", ASCENDING)])
        self.structures.create_index([("elements", ASCENDING)])
        self.structures.create_index([("uncertainty.max_force_dev_eV_A", DESCENDING)])
        self.labels.create_index(
            [("structure_key", ASCENDING), ("parameters_hash", ASCENDING)], unique=True
        )
        self.labels.create_index([("campaign", ASCENDING), ("iteration", ASCENDING)])
        self.labels.create_index([("campaign", ASCENDING), ("ok", ASCENDING)])
        self.models.create_index(
            [("campaign", ASCENDING), ("iteration", ASCENDING), ("member", ASCENDING)], unique=True
        )
        self.iterations.create_index(
            [("campaign", ASCENDING), ("iteration", ASCENDING)], unique=True
        )
        self.references.create_index(
            [("parameters_hash", ASCENDING), ("element", ASCENDING)], unique=True
        )

    # ------------------------------------------------------------------ campaigns
    def register_campaign(self, config: CampaignConfig) -> bool:
        """Record a campaign; True if new, False if it exists with the same config.

        Raises
        ------
        StoreError
            A campaign of that name exists with a different configuration.
        """
        digest = config_hash(config)
        existing = self.campaigns.find_one({"name": config.name})
        if existing is not None:
            if existing["config_hash"] != digest:
                raise StoreError(
                    f"campaign '{config.name}' already exists in this store with a different "
                    "configuration; choose another name or another store"
                )
            return False
        now = utcnow()
        self.campaigns.insert_one(
            {
                "name": config.name,
                "config": config.model_dump(mode="json"),
                "config_hash": digest,
                "status": "running",
                "reason": None,
                "created": now,
                "updated": now,
            }
        )
        return True

    def campaign(self, name: str) -> dict[str, Any]:
        """The campaign document; StoreError if there is none."""
        doc = self.campaigns.find_one({"name": name})
        if doc is None:
            known = ", ".join(sorted(self.campaigns.distinct("name"))) or "none"
            raise StoreError(f"no campaign '{name}' in this store (campaigns: {known})")
        return doc

    def campaign_config(self, name: str) -> CampaignConfig:
        """The validated configuration the campaign was started with."""
        return CampaignConfig.model_validate(self.campaign(name)["config"])

    def campaign_names(self) -> list[str]:
        """Names of all campaigns, oldest first."""
        return [d["name"] for d in self.campaigns.find({}, {"name": 1}).sort("created", ASCENDING)]

    def set_campaign_status(self, name: str, status: str, reason: str | None = None) -> None:
        """Set ``running`` / ``converged`` / ``stopped`` / ``failed`` with the reason."""
        self.campaigns.update_one(
            {"name": name}, {"$set": {"status": status, "reason": reason, "updated": utcnow()}}
        )

    # ------------------------------------------------------------------ structures
    def add_structures(
        self,
        campaign: str,
        frames: Sequence[Atoms],
        keys: Sequence[str],
        *,
        iteration: int,
        status: str,
        origins: Sequence[Mapping[str, Any]],
        extras: Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Insert configurations not yet known to the campaign; return how many were new.

        An existing (campaign, key) keeps its document: the first sighting wins.
        """
        if status not in STATUSES:
            raise StoreError(f"unknown structure status '{status}'")
        new = 0
        now = utcnow()
        for i, (atoms, key) in enumerate(zip(frames, keys, strict=True)):
            doc = {
                "campaign": campaign,
                "key": key,
                "iteration": iteration,
                "formula": atoms.get_chemical_formula(mode="hill"),
                "reduced_formula": atoms.get_chemical_formula(mode="hill", empirical=True),
                "elements": sorted(set(atoms.get_chemical_symbols())),
                "n_atoms": len(atoms),
                "atoms": atoms_to_doc(atoms),
                "structure": pymatgen_dict(atoms),
                "origin": dict(origins[i]),
                "status": status,
                "reason": None,
                "created": now,
                "updated": now,
            }
            if extras is not None:
                doc.update(extras[i])
            result = self.structures.update_one(
                {"campaign": campaign, "key": key}, {"$setOnInsert": doc}, upsert=True
            )
            new += int(result.upserted_id is not None)
        return new

    def structure(self, campaign: str, key: str) -> dict[str, Any]:
        """One structure document; StoreError if unknown."""
        doc = self.structures.find_one({"campaign": campaign, "key": key})
        if doc is None:
            raise StoreError(f"no structure {key} in campaign '{campaign}'")
        return doc

    def find_structures(
        self, query: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Iterate lazily over structure documents matching a pymongo query."""
        return iter(self.structures.find(dict(query), projection).sort("_id", ASCENDING))

    def set_status(
        self,
        campaign: str,
        keys: Iterable[str],
        status: str,
        reason: str | None = None,
        **fields: Any,
    ) -> None:
        """Move structures to ``status`` (with a reason and extra fields)."""
        if status not in STATUSES:
            raise StoreError(f"unknown structure status '{status}'")
        update = {"status": status, "reason": reason, "updated": utcnow(), **fields}
        self.structures.update_many(
            {"campaign": campaign, "key": {"$in": list(keys)}}, {"$set": update}
        )

    def delete_unlabeled(self, campaign: str, where: Mapping[str, Any]) -> int:
        """Delete the campaign's structures whose fields equal ``where`` and were never
        selected or labeled (e.g. ``{"origin.iteration": 3, "origin.walker": 1}``)."""
        result = self.structures.delete_many(
            {
                **where,
                "campaign": campaign,
                "status": {"$in": ["explored", "accurate", "candidate", "unphysical"]},
            }
        )
        return int(result.deleted_count)

    # ------------------------------------------------------------------ labels
    def label(self, structure_key: str, parameters_hash: str) -> dict[str, Any] | None:
        """The label of a structure for one parameter set, if computed."""
        return self.labels.find_one(
            {"structure_key": structure_key, "parameters_hash": parameters_hash}
        )

    def add_label(self, structure_key: str, doc: Mapping[str, Any]) -> bool:
        """Insert a label; False (and no change) if that (key, parameters) exists."""
        record = {**doc, "structure_key": structure_key, "created": utcnow()}
        try:
            self.labels.insert_one(record)
        except DuplicateKeyError:
            return False
        return True

    def drop_failed_label(self, label: Mapping[str, Any]) -> None:
        """Delete a failed label (a good one is about to take its place)."""
        self.labels.delete_one({"_id": label["_id"], "ok": False})

    def replace_failed_label(self, label: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
        """Overwrite a failed label with a newer failure, keeping its creation time."""
        created = {"created": label["created"]} if "created" in label else {}
        record = {**doc, "structure_key": label["structure_key"], **created}
        self.labels.replace_one({"_id": label["_id"]}, record)

    def labeled_frames(self, campaign: str, parameters_hash: str) -> list[Atoms]:
        """Every successfully labeled frame of a campaign as Atoms with a SinglePointCalculator.

        ``atoms.info`` carries ``key``, ``iteration`` and ``origin_kind``
        (``seed``, ``short_range``, ``walker``, ...).
        """
        keys = [
            d["key"]
            for d in self.structures.find(
                {"campaign": campaign, "status": {"$in": ["labeled", "seed"]}}, {"key": 1}
            ).sort("key", ASCENDING)
        ]
        labels = {
            d["structure_key"]: d
            for d in self.labels.find(
                {
                    "structure_key": {"$in": keys},
                    "parameters_hash": parameters_hash,
                    "ok": True,
                    # labels whose SCF retries changed the physics (more smearing) stay out
                    "parameters_effective_hash": None,
                }
            )
        }
        frames = []
        for doc in self.structures.find({"campaign": campaign, "key": {"$in": list(labels)}}).sort(
            "key", ASCENDING
        ):
            label = labels[doc["key"]]
            atoms = labeled_atoms(
                atoms_from_doc(doc["atoms"]),
                label["energy_eV"],
                label["forces_eV_A"],
                label.get("stress_eV_A3"),
            )
            atoms.info.update(
                {
                    "key": doc["key"],
                    "iteration": doc["iteration"],
                    "origin_kind": (doc.get("origin") or {}).get("kind"),
                }
            )
            frames.append(atoms)
        return frames

    # ------------------------------------------------------------------ references
    def reference_energies(self, parameters_hash: str) -> dict[str, float]:
        """Isolated-atom energies (eV) per element for one DFT parameter set."""
        return {
            d["element"]: float(d["energy_eV"])
            for d in self.references.find({"parameters_hash": parameters_hash})
        }

    def put_reference(self, parameters_hash: str, element: str, energy_eV: float) -> None:
        """Record one isolated-atom energy (idempotent)."""
        self.references.update_one(
            {"parameters_hash": parameters_hash, "element": element},
            {"$set": {"energy_eV": float(energy_eV), "updated": utcnow()}},
            upsert=True,
        )

    # ------------------------------------------------------------------ models
    def put_model(
        self,
        campaign: str,
        iteration: int | str,
        member: int,
        path: Path,
        meta: Mapping[str, Any],
    ) -> str:
        """Store a member's model file in GridFS with its sha256; return the model id.

        ``iteration`` is an iteration number or :data:`FINAL`. Re-running the
        same (campaign, iteration, member) replaces the record.
        """
        model_id = make_model_id(campaign, iteration, member)
        sha256 = sha256_file(path)
        old = self.models.find_one({"_id": model_id})
        if old is not None and old.get("file_id") is not None:
            self.gridfs.delete(old["file_id"])
        with open(path, "rb") as handle:
            file_id = self.gridfs.put(handle, filename=f"{model_id}.model", sha256=sha256)
        doc = {
            "_id": model_id,
            "campaign": campaign,
            "iteration": iteration,
            "member": member,
            "file_id": file_id,
            "sha256": sha256,
            "size_bytes": path.stat().st_size,
            "status": "trained",
            "created": utcnow(),
            **meta,
        }
        self.models.replace_one({"_id": model_id}, doc, upsert=True)
        return model_id

    def record_failed_model(
        self,
        campaign: str,
        iteration: int | str,
        member: int,
        error: str,
        meta: Mapping[str, Any],
    ) -> None:
        """Record a member whose training failed (no file)."""
        model_id = make_model_id(campaign, iteration, member)
        doc = {
            "_id": model_id,
            "campaign": campaign,
            "iteration": iteration,
            "member": member,
            "status": "failed",
            "error": error,
            "file_id": None,
            "created": utcnow(),
            **meta,
        }
        self.models.replace_one({"_id": model_id}, doc, upsert=True)

    def trained_models(self, campaign: str, iteration: int | str) -> list[dict[str, Any]]:
        """Model records of the members that trained in one iteration (or FINAL), by member."""
        return list(
            self.models.find(
                {"campaign": campaign, "iteration": iteration, "status": "trained"}
            ).sort("member", ASCENDING)
        )

    def fetch_model(self, model_id: str, directory: Path) -> Path:
        """Write a model file to ``directory`` after checking its sha256.

        A file already there with the right hash is reused.

        Raises
        ------
        TrainingError
            The record is missing, or the file's hash does not match the record.
        """
        record = self.models.find_one({"_id": model_id})
        if record is None or record.get("file_id") is None:
            raise TrainingError(f"no trained model '{model_id}' in the store")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / (model_id.replace("/", "_") + ".model")
        if not (path.exists() and sha256_file(path) == record["sha256"]):
            with open(path, "wb") as handle:
                handle.write(self.gridfs.get(record["file_id"]).read())
        actual = sha256_file(path)
        if actual != record["sha256"]:
            raise TrainingError(
                f"model file {path} has sha256 {actual[:12]}… but the store records "
                f"{record['sha256'][:12]}… for '{model_id}': refusing a tampered or corrupt model"
            )
        return path

    # ------------------------------------------------------------------ the result
    def put_final(self, campaign: str, doc: Mapping[str, Any]) -> None:
        """Record the final fit (``campaigns.final``): members, data, held-out errors."""
        self.campaigns.update_one(
            {"name": campaign}, {"$set": {"final": {**doc, "updated": utcnow()}}}
        )

    def final(self, campaign: str) -> dict[str, Any] | None:
        """The final fit's record, None before it has run (StoreError: no such campaign)."""
        return self.campaign(campaign).get("final")

    def put_validation(self, campaign: str, doc: Mapping[str, Any]) -> None:
        """Record the validation of the final committee (``campaigns.validation``)."""
        self.campaigns.update_one(
            {"name": campaign}, {"$set": {"validation": {**doc, "updated": utcnow()}}}
        )

    def validation(self, campaign: str) -> dict[str, Any] | None:
        """The last validation's figures, None if none has run."""
        return self.campaign(campaign).get("validation")

    # ------------------------------------------------------------------ iterations
    def put_iteration(self, campaign: str, iteration: int, figures: Mapping[str, Any]) -> None:
        """Record (or update) one iteration's figures."""
        self.iterations.update_one(
            {"campaign": campaign, "iteration": iteration},
            {"$set": {**figures, "updated": utcnow()}},
            upsert=True,
        )

    def iteration_docs(self, campaign: str) -> list[dict[str, Any]]:
        """All iteration documents of a campaign, in order."""
        return list(self.iterations.find({"campaign": campaign}).sort("iteration", ASCENDING))

    def count_labels(self, campaign: str) -> int:
        """DFT calculations spent by the campaign (successful and failed)."""
        return int(self.labels.count_documents({"campaign": campaign}))


def as_float_list(array: np.ndarray | None) -> list[Any] | None:
    """Nested lists of floats for a document (None stays None)."""
    return None if array is None else np.asarray(array, dtype=float).tolist()
