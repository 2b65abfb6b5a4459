"""Label one structure with the reference method (DFT or its stand-in).

Labeling is split in two so the same code serves a Firework run in-process
and an offline batch job that cannot open the store:

- :func:`compute_label_outcome` runs the sanity checks and the labeler and
  returns a plain *outcome* dict (``ok`` / ``failed`` / ``rejected``);
- :func:`record_label_outcome` writes an outcome into the store, idempotently.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from ase import Atoms

from alflow.config import SanityConfig
from alflow.errors import LabelingError
from alflow.labeling import Labeler, isolated_atom_energies, sanity_reason
from alflow.settings import Settings
from alflow.steps.context import StepContext
from alflow.store import Store
from alflow.structures import atoms_from_doc

__all__ = [
    "compute_label_outcome",
    "done_status_for",
    "failure_document",
    "label_directory",
    "label_structure",
    "record_label_outcome",
    "reference_energies",
]

log = logging.getLogger(__name__)


def failure_document(
    labeler: Labeler,
    settings: Settings,
    *,
    error: str,
    attempts: list[dict[str, Any]],
    host: str,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """The failed-label document of a calculation that did not give a label."""
    return {
        **provenance,
        "code": labeler.code,
        "parameters": labeler.parameters(),
        "parameters_hash": labeler.parameters_hash(),
        "error": error,
        "host": host,
        "cores": settings.mpi_ranks if labeler.code == "gpaw" else 1,
        "attempts": attempts,
    }


def compute_label_outcome(
    labeler: Labeler,
    atoms: Atoms,
    *,
    sanity: SanityConfig,
    settings: Settings,
    workdir: Path,
    done_status: str = "labeled",
    provenance: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], LabelingError | None]:
    """Check and label one structure; never touches the store.

    Returns
    -------
    outcome : dict
        ``{"status": "rejected", "reason"}``, ``{"status": "ok", "label",
        "done_status"}`` (``label``: :meth:`LabelResult.to_doc` plus
        provenance) or ``{"status": "failed", "failure"}`` (the failed-label
        document with every attempt).
    error : LabelingError or None
        The labeler's error for a failed outcome, for the caller to raise
        after recording it.
    """
    provenance = {"workdir": str(workdir), **(provenance or {})}
    reason = sanity_reason(atoms, sanity)
    if reason is not None:
        return {"status": "rejected", "reason": reason}, None
    try:
        result = labeler.label(atoms, workdir)
    except LabelingError as exc:
        failure = failure_document(
            labeler,
            settings,
            error=str(exc),
            attempts=list(getattr(exc, "attempts", [])),
            host=socket.gethostname(),
            provenance=provenance,
        )
        return {"status": "failed", "failure": failure}, exc
    label = {**result.to_doc(), **provenance}
    return {"status": "ok", "label": label, "done_status": done_status}, None


def record_label_outcome(
    store: Store, campaign: str, iteration: int, key: str, outcome: dict[str, Any]
) -> str:
    """Write an outcome of :func:`compute_label_outcome` into the store.

    Idempotent: a good label already stored for (key, parameters hash) is
    kept (the store's unique index), so recording the same job twice, or a
    job that ran twice, stores one label; a failure never overwrites a good
    label; a new failure replaces an older one.

    Returns
    -------
    str
        The structure's new status.
    """
    status = outcome["status"]
    if status == "rejected":
        store.set_status(campaign, [key], "rejected", reason=outcome["reason"])
        log.warning("structure %s rejected before DFT: %s", key, outcome["reason"])
        return "rejected"
    if status == "ok":
        doc = {**outcome["label"], "campaign": campaign, "iteration": iteration, "ok": True}
        existing = store.label(key, doc["parameters_hash"])
        if existing is not None and not existing.get("ok"):
            store.drop_failed_label(existing)
        if not store.add_label(key, doc):
            log.info("structure %s: label already stored; kept the stored one", key)
        saved = store.label(key, doc["parameters_hash"])
        done = outcome.get("done_status", "labeled")
        store.set_status(campaign, [key], done, label_id=saved["_id"] if saved else None)
        return done
    failure = {**outcome["failure"], "campaign": campaign, "iteration": iteration, "ok": False}
    existing = store.label(key, failure["parameters_hash"])
    if existing is None:
        store.add_label(key, failure)
    elif not existing.get("ok"):
        store.replace_failed_label(existing, failure)
    else:  # a good label exists (an earlier run): keep it, never overwrite with a failure
        return str(store.structure(campaign, key)["status"])
    store.set_status(campaign, [key], "failed", reason=failure["error"])
    return "failed"


def done_status_for(status: str) -> str:
    """A structure's status once labeled: seed and held-out frames keep theirs."""
    return status if status in ("seed", "holdout") else "labeled"


def label_directory(settings: Settings, campaign: str, key: str, parameters_hash: str) -> Path:
    """Where one structure's calculation runs: the same for every rerun of its Firework.

    ``<scratch_dir>/<campaign>/dft/<key>-<hash>``: a job rerun by ``lpad
    detect_lostruns --rerun`` or after ``kill -9`` finds the finished
    ``result.json`` of the earlier run there and reuses it. On a cluster,
    point ``ALFLOW_SCRATCH_DIR`` of the dft workers at a shared file system.
    """
    return Path(settings.scratch_dir).resolve() / campaign / "dft" / f"{key}-{parameters_hash[:12]}"


def label_structure(ctx: StepContext, iteration: int, key: str) -> dict[str, Any]:
    """Compute (or reuse) the label of one structure and record it.

    A label already in the store for the same structure and parameter set is
    reused, never recomputed. A structure that fails the sanity checks is
    rejected with the reason and never sent. A calculation that fails after
    the labeler's retries is stored as a failed label with every attempt.

    Parameters
    ----------
    ctx
        Store, campaign, settings and the launch directory.
    iteration
        The iteration that asked for the label (provenance).
    key
        Structure key within the campaign.

    Returns
    -------
    dict
        ``{"key", "status", "reused", "energy_eV"}``.

    Raises
    ------
    LabelingError
        The calculation failed; the failure is recorded before raising.
    """
    store, campaign = ctx.store, ctx.campaign
    doc = store.structure(campaign, key)
    labeler = ctx.labeler()
    parameters_hash = labeler.parameters_hash()
    done_status = done_status_for(doc["status"])
    if doc["status"] == "rejected":  # e.g. re-scored as accurate by a newer committee
        log.info("structure %s: not labeled (%s)", key, doc.get("reason"))
        return {"key": key, "status": "rejected", "reused": False, "energy_eV": None}

    existing = store.label(key, parameters_hash)
    if existing is not None and existing.get("ok"):
        store.set_status(campaign, [key], done_status, label_id=existing["_id"])
        log.info("structure %s: label reused", key)
        return {
            "key": key,
            "status": done_status,
            "reused": True,
            "energy_eV": existing["energy_eV"],
        }

    outcome, error = compute_label_outcome(
        labeler,
        atoms_from_doc(doc["atoms"]),
        sanity=ctx.config.selection.sanity,
        settings=ctx.settings,
        workdir=label_directory(ctx.settings, campaign, key, parameters_hash),
        done_status=done_status,
    )
    status = record_label_outcome(store, campaign, iteration, key, outcome)
    if error is not None:
        raise error
    energy = outcome["label"]["energy_eV"] if outcome["status"] == "ok" else None
    return {"key": key, "status": status, "reused": False, "energy_eV": energy}


def reference_energies(ctx: StepContext, elements: list[str]) -> dict[str, float]:
    """Isolated-atom energies (eV) of ``elements``, computed once per parameter set."""
    labeler = ctx.labeler()
    parameters_hash = labeler.parameters_hash()
    known = ctx.store.reference_energies(parameters_hash)
    missing = [e for e in sorted(set(elements)) if e not in known]
    if missing:
        computed = isolated_atom_energies(labeler, missing, ctx.workdir)
        for element, energy_eV in computed.items():
            ctx.store.put_reference(parameters_hash, element, energy_eV)
        known.update(computed)
    return {e: known[e] for e in sorted(set(elements))}
