"""Label one structure with the reference method (DFT or its stand-in)."""

from __future__ import annotations

import logging
import socket
from typing import Any

from alflow.errors import LabelingError
from alflow.labeling import isolated_atom_energies, make_labeler, sanity_reason
from alflow.steps.context import StepContext
from alflow.structures import atoms_from_doc

__all__ = ["label_structure", "reference_energies"]

log = logging.getLogger(__name__)


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
    atoms = atoms_from_doc(doc["atoms"])
    labeler = make_labeler(ctx.config.labeling.oracle, ctx.settings)
    parameters_hash = labeler.parameters_hash()
    done_status = "seed" if doc["status"] == "seed" else "labeled"
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
    if existing is not None:  # a failed earlier try: this run is a deliberate retry
        store.labels.delete_one({"_id": existing["_id"]})

    reason = sanity_reason(atoms, ctx.config.selection.sanity)
    if reason is not None:
        store.set_status(campaign, [key], "rejected", reason=reason)
        log.warning("structure %s rejected before DFT: %s", key, reason)
        return {"key": key, "status": "rejected", "reused": False, "energy_eV": None}

    provenance = {"campaign": campaign, "iteration": iteration, "workdir": str(ctx.workdir)}
    try:
        result = labeler.label(atoms, ctx.workdir)
    except LabelingError as exc:
        store.add_label(
            key,
            {
                **provenance,
                "ok": False,
                "code": labeler.code,
                "parameters": labeler.parameters(),
                "parameters_hash": parameters_hash,
                "error": str(exc),
                "host": socket.gethostname(),
                "cores": ctx.settings.mpi_ranks if labeler.code == "gpaw" else 1,
                "attempts": list(getattr(exc, "attempts", [])),
            },
        )
        store.set_status(campaign, [key], "failed", reason=str(exc))
        raise
    label_doc = {**result.to_doc(), **provenance, "ok": True}
    store.add_label(key, label_doc)
    saved = store.label(key, parameters_hash)
    store.set_status(campaign, [key], done_status, label_id=saved["_id"] if saved else None)
    return {"key": key, "status": done_status, "reused": False, "energy_eV": result.energy_eV}


def reference_energies(ctx: StepContext, elements: list[str]) -> dict[str, float]:
    """Isolated-atom energies (eV) of ``elements``, computed once per parameter set."""
    labeler = make_labeler(ctx.config.labeling.oracle, ctx.settings)
    parameters_hash = labeler.parameters_hash()
    known = ctx.store.reference_energies(parameters_hash)
    missing = [e for e in sorted(set(elements)) if e not in known]
    if missing:
        computed = isolated_atom_energies(labeler, missing, ctx.workdir)
        for element, energy_eV in computed.items():
            ctx.store.put_reference(parameters_hash, element, energy_eV)
        known.update(computed)
    return {e: known[e] for e in sorted(set(elements))}
