"""Choose which explored frames of an iteration get a DFT label."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np

from alflow.labeling import sanity_reason
from alflow.selection import descriptor_species, select_candidates, soap_free_descriptor
from alflow.steps.context import StepContext
from alflow.structures import atoms_from_doc

__all__ = ["select_for_labeling"]

log = logging.getLogger(__name__)

_CATEGORY_STATUS = {"accurate": "accurate", "candidate": "candidate", "failed": "unphysical"}


def select_for_labeling(ctx: StepContext, iteration: int) -> dict[str, Any]:
    """Classify the iteration's frames by committee deviation and pick a diverse budget.

    Frames below the trust window become ``accurate``, above it
    ``unphysical``; candidates failing the sanity checks or already known to
    the campaign are ``rejected`` with the reason; the chosen ones become
    ``selected``. The budget is the smaller of the per-iteration budget and
    what is left of the campaign's DFT budget.

    Returns
    -------
    dict
        ``{"selected": [keys], "counts": {...}, "budget": int}``.
    """
    store, config = ctx.store, ctx.config
    query = {"campaign": ctx.campaign, "iteration": iteration, "status": "explored"}
    docs = list(store.find_structures(query, {"key": 1, "atoms": 1, "uncertainty": 1}))
    spent = store.count_labels(ctx.campaign)
    budget = max(0, min(config.selection.max_per_iteration, config.loop.max_dft_labels - spent))
    if not docs:
        log.info("iteration %d: no frames to select from", iteration)
        return {"selected": [], "counts": {"explored": 0}, "budget": budget}

    atoms = [atoms_from_doc(d["atoms"]) for d in docs]
    keys = [d["key"] for d in docs]
    deviation = np.array([d["uncertainty"]["max_force_dev_eV_A"] for d in docs], dtype=float)
    known = {
        d["key"]
        for d in store.find_structures(
            {
                "campaign": ctx.campaign,
                "status": {"$in": ["seed", "selected", "labeled", "failed"]},
            },
            {"key": 1, "atoms": 1},
        )
    }
    labeled_atoms = [
        atoms_from_doc(d["atoms"])
        for d in store.find_structures(
            {"campaign": ctx.campaign, "status": {"$in": ["seed", "labeled"]}}, {"atoms": 1}
        )
    ]
    species = descriptor_species(atoms)
    known_descriptors = (
        np.array([soap_free_descriptor(a, species=species) for a in labeled_atoms])
        if labeled_atoms
        else None
    )
    selection = select_candidates(
        atoms,
        deviation,
        keys,
        selection=config.selection,
        budget=budget,
        known_keys=known,
        known_descriptors=known_descriptors,
        sanity_check=partial(sanity_reason, sanity=config.selection.sanity),
    )

    classes = np.asarray(selection.classes)
    for category, status in _CATEGORY_STATUS.items():
        members = [keys[i] for i in np.flatnonzero(classes == category)]
        if members:
            store.set_status(ctx.campaign, members, status)
    for index, reason in selection.rejected.items():
        store.set_status(ctx.campaign, [keys[index]], "rejected", reason=reason)
    chosen = [keys[i] for i in selection.selected]
    if chosen:
        store.set_status(ctx.campaign, chosen, "selected")
    counts = {"explored": len(docs), **selection.counts, "budget": budget}
    store.put_iteration(ctx.campaign, iteration, {"selection": counts})
    log.info(
        "iteration %d: %d frames, %s accurate, %s candidates, %d selected (budget %d)",
        iteration,
        len(docs),
        selection.counts.get("accurate", 0),
        selection.counts.get("candidate", 0),
        len(chosen),
        budget,
    )
    return {"selected": chosen, "counts": counts, "budget": budget}
