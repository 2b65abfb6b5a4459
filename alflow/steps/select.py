"""Choose which explored frames of an iteration get a DFT label.

Order of work in :func:`select_for_labeling` (iteration N):

1. Load the committee of iteration N from the store (if it loads; it is
   optional: descriptors and re-scoring fall back without it).
2. Calibrate the trust window on every labeled frame of the campaign that
   carries the committee prediction it was selected with
   (:func:`calibration_data`, :func:`alflow.calibration.calibrated_thresholds`).
3. Re-score frames of earlier iterations still ``selected`` (queued for DFT,
   not labeled) with the committee of iteration N; those now below the window
   become ``rejected`` with reason ``pending DFT dropped: ...`` and a
   ``dropped_pending`` field.
4. Classify and select the iteration's explored frames
   (:func:`alflow.selection.select_candidates`): candidates by FPS on MACE
   descriptors (or RDF ones), plus a few random ``audit`` frames of the
   accurate class, marked ``audit: true``.
5. Write the ``selection`` sub-document of the iteration: counts, window
   (``thresholds``), calibration fit, descriptor kind, pending re-scoring.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np
from ase import Atoms

from alflow.calibration import Thresholds, calibrated_thresholds, frame_force_error_eV_A
from alflow.labeling import sanity_reason
from alflow.selection import (
    Selection,
    descriptor_species,
    iteration_budget,
    mace_structure_descriptors,
    rescore_pending,
    score_frames,
    select_candidates,
    soap_free_descriptor,
)
from alflow.steps.context import StepContext
from alflow.steps.holdout import record_holdout_errors
from alflow.steps.select_random import select_random
from alflow.structures import atoms_from_doc

__all__ = ["AUDIT_REASON", "calibration_data", "select_for_labeling"]

log = logging.getLogger(__name__)

_CATEGORY_STATUS = {"accurate": "accurate", "candidate": "candidate", "failed": "unphysical"}
#: ``reason`` of the audit frames (status ``selected``, field ``audit: true``).
AUDIT_REASON = "audit: random frame of the accurate class (calibration below the window)"
#: Prefix of the ``reason`` of queued frames dropped after re-scoring (status ``rejected``).
DROPPED_REASON = "pending DFT dropped"


def calibration_data(
    ctx: StepContext, before_iteration: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores and true errors of the campaign's labeled frames from earlier iterations.

    Parameters
    ----------
    ctx
        Store, campaign, config and settings.
    before_iteration
        Only frames of iterations ``< before_iteration``.

    Returns
    -------
    scores, errors_eV_A, iterations
        Selection score of each frame when it was selected (form of
        ``selection.deviation``), its true max per-atom force error of the
        committee mean against the label (eV/Å), and its iteration.
    """
    store, campaign = ctx.store, ctx.campaign
    parameters_hash = ctx.parameters_hash
    deviation, errors, iterations, mean_forces = [], [], [], []
    for doc in store.structures_of(
        campaign,
        status="labeled",
        before_iteration=before_iteration,
        has=("committee.forces_eV_A", "uncertainty.max_force_dev_eV_A"),
        fields=("key", "iteration", "committee", "uncertainty"),
    ):
        label = store.label(doc["key"], parameters_hash)
        if label is None or not label.get("ok") or label.get("forces_eV_A") is None:
            continue
        predicted = np.asarray(doc["committee"]["forces_eV_A"], dtype=float)
        deviation.append(float(doc["uncertainty"]["max_force_dev_eV_A"]))
        errors.append(frame_force_error_eV_A(predicted, label["forces_eV_A"]))
        iterations.append(int(doc["iteration"]))
        mean_forces.append(predicted)
    scores = score_frames(np.asarray(deviation, dtype=float), mean_forces, ctx.config.selection)
    return scores, np.asarray(errors, dtype=float), np.asarray(iterations, dtype=int)


def _drop_pending(
    ctx: StepContext, iteration: int, committee: Any | None, thresholds: Thresholds
) -> dict[str, Any]:
    """Re-score frames of earlier iterations still queued for DFT; drop the accurate ones."""
    store, campaign = ctx.store, ctx.campaign
    docs = list(
        store.structures_of(
            campaign,
            status="selected",
            before_iteration=iteration,
            fields=("key", "atoms", "iteration"),
        )
    )
    summary: dict[str, Any] = {"pending": len(docs), "rescored": 0, "dropped": 0, "keys": []}
    if not docs or committee is None or not ctx.config.selection.rescore_pending:
        return summary
    frames = [atoms_from_doc(d["atoms"]) for d in docs]
    result = rescore_pending(frames, committee, thresholds.lo, ctx.config.selection)
    summary["rescored"] = len(docs)
    for doc, drop, deviation, score in zip(
        docs, result.drop, result.max_force_dev_eV_A, result.score, strict=True
    ):
        if not drop:
            continue
        reason = (
            f"{DROPPED_REASON}: committee of iteration {iteration} scores {score:.4g} "
            f"< trust_lo {thresholds.lo:.4g}"
        )
        store.set_status(
            campaign,
            [doc["key"]],
            "rejected",
            reason=reason,
            dropped_pending={
                "by_iteration": iteration,
                "max_force_dev_eV_A": float(deviation),
                "score": float(score),
                "trust_lo": thresholds.lo,
            },
        )
        summary["keys"].append(doc["key"])
    summary["dropped"] = len(summary["keys"])
    if summary["dropped"]:
        log.info(
            "iteration %d: %d of %d frames queued for DFT are now accurate: dropped",
            iteration,
            summary["dropped"],
            len(docs),
        )
    return summary


def _descriptors(
    committee: Any | None, kind: str, frames: list[Atoms], known: list[Atoms]
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Descriptors of the frames and of the known structures, and which kind was used."""
    if kind in ("auto", "mace") and committee is not None:
        both = mace_structure_descriptors(committee, [*frames, *known])
        if both is not None and len(both) == len(frames) + len(known):
            return both[: len(frames)], (both[len(frames) :] if known else None), "mace"
    if kind == "mace":
        log.warning("MACE descriptors unavailable: FPS uses the RDF descriptor")
    species = descriptor_species(frames)
    known_descriptors = (
        np.array([soap_free_descriptor(a, species=species) for a in known]) if known else None
    )
    return None, known_descriptors, "rdf"


def _set(ctx: StepContext, keys: Iterable[str], status: str, **kwargs: Any) -> None:
    keys = list(keys)
    if keys:
        ctx.store.set_status(ctx.campaign, keys, status, **kwargs)


def _iteration_committee(
    ctx: StepContext, iteration: int, committee: Any | None, has_frames: bool
) -> Any | None:
    """The given committee, else the iteration's when descriptors, re-scoring or holdout need it."""
    if committee is not None:
        return committee
    selection_config, store = ctx.config.selection, ctx.store
    pending_exist = selection_config.rescore_pending and store.count_structures(
        ctx.campaign, status="selected", before_iteration=iteration
    )
    has_holdout = store.count_structures(ctx.campaign, status="holdout")
    if (has_frames and selection_config.descriptor != "rdf") or pending_exist or has_holdout:
        return ctx.iteration_committee(iteration)
    return None


def _select_frames(
    ctx: StepContext,
    iteration: int,
    docs: list[dict[str, Any]],
    committee: Any | None,
    thresholds: Thresholds,
    labels_left: int,
) -> tuple[Selection, list[str], str]:
    """Run :func:`select_candidates` on the explored frames; also their keys and the descriptor kind."""
    store, selection_config = ctx.store, ctx.config.selection
    atoms = [atoms_from_doc(d["atoms"]) for d in docs]
    keys = [d["key"] for d in docs]
    deviation = np.array([d["uncertainty"]["max_force_dev_eV_A"] for d in docs], dtype=float)
    mean_forces = (
        [np.asarray(d["committee"]["forces_eV_A"]) for d in docs]
        if selection_config.deviation == "relative"
        else None
    )
    known = {
        d["key"]
        for d in store.structures_of(
            ctx.campaign,
            status=("seed", "holdout", "selected", "labeled", "failed"),
            fields=("key",),
        )
    }
    descriptors, known_descriptors, kind = (None, None, "none")
    if selection_config.diversity == "fps":
        labeled_atoms = [
            atoms_from_doc(d["atoms"])
            for d in store.structures_of(
                ctx.campaign, status=("seed", "labeled"), fields=("atoms",)
            )
        ]
        descriptors, known_descriptors, kind = _descriptors(
            committee, selection_config.descriptor, atoms, labeled_atoms
        )
    selection = select_candidates(
        atoms,
        score_frames(deviation, mean_forces, selection_config),
        keys,
        selection=selection_config,
        budget=labels_left,
        known_keys=known,
        known_descriptors=known_descriptors,
        sanity_check=partial(
            sanity_reason, sanity=selection_config.sanity, limits=ctx.contact_limits(iteration)
        ),
        window=(thresholds.lo, thresholds.hi),
        descriptors=descriptors,
        audit_per_iteration=selection_config.audit_per_iteration,
        seed=selection_config.seed + iteration,
    )
    return selection, keys, kind


def _write_statuses(ctx: StepContext, keys: list[str], selection: Selection) -> None:
    """Status of every explored frame: by class, rejected with its reason, selected or audit."""
    classes = np.asarray(selection.classes)
    for category, status in _CATEGORY_STATUS.items():
        _set(ctx, [keys[i] for i in np.flatnonzero(classes == category)], status)
    for index, reason in selection.rejected.items():
        _set(ctx, [keys[index]], "rejected", reason=reason)
    audit = set(selection.audit)
    _set(ctx, [keys[i] for i in selection.selected if i not in audit], "selected")
    _set(ctx, [keys[i] for i in selection.audit], "selected", reason=AUDIT_REASON, audit=True)


def select_for_labeling(
    ctx: StepContext, iteration: int, *, committee: Any | None = None
) -> dict[str, Any]:
    """Classify the iteration's frames, calibrate the window and pick a diverse budget.

    Frames below the trust window become ``accurate``, above it
    ``unphysical``; candidates failing the sanity checks or already known to
    the campaign are ``rejected`` with the reason; the chosen ones and the
    audit frames become ``selected`` (audit frames with ``audit: true``). The
    budget is the smaller of the per-iteration budget and what is left of the
    campaign's DFT budget. ``selection.strategy: random`` branches off at once
    to :func:`alflow.steps.select_random.select_random` (the baseline).

    Parameters
    ----------
    ctx
        Store, campaign, config, settings and the launch directory.
    iteration
        The iteration whose explored frames are selected.
    committee
        The iteration's committee calculator; default: loaded from the store
        when descriptors or re-scoring need it (None if it cannot be loaded).

    Returns
    -------
    dict
        ``{"selected": [keys], "audit": [keys], "dropped_pending": [keys],
        "counts": {...}, "budget": int, "thresholds": {...}}``. Every key in
        ``selected`` (audit frames included) needs a DFT label.
    """
    store, selection_config = ctx.store, ctx.config.selection
    if selection_config.strategy == "random":  # the baseline: its own small function
        return select_random(ctx, iteration)
    labels_left = ctx.labels_left()
    docs = list(
        store.structures_of(
            ctx.campaign,
            status="explored",
            iteration=iteration,
            fields=("key", "atoms", "uncertainty", "committee"),
        )
    )
    committee = _iteration_committee(ctx, iteration, committee, has_frames=bool(docs))
    record_holdout_errors(ctx, iteration, committee)
    scores_seen, errors_seen, _ = calibration_data(ctx, iteration)
    thresholds = calibrated_thresholds(scores_seen, errors_seen, selection_config)
    pending = _drop_pending(ctx, iteration, committee, thresholds)
    record: dict[str, Any] = {
        "strategy": "committee",
        "thresholds": thresholds.as_doc(),
        "pending": {k: v for k, v in pending.items() if k != "keys"},
    }
    chosen: list[str] = []
    audit_keys: list[str] = []
    if not docs:
        log.info("iteration %d: no frames to select from", iteration)
        counts = {
            "explored": 0,
            "selected": 0,
            "audit": 0,
            "budget": iteration_budget(selection_config, labels_left),
        }
    else:
        selection, keys, kind = _select_frames(
            ctx, iteration, docs, committee, thresholds, labels_left
        )
        _write_statuses(ctx, keys, selection)
        chosen = [keys[i] for i in selection.selected]
        audit_keys = [keys[i] for i in selection.audit]
        counts = {"explored": len(docs), **selection.counts, "budget": selection.budget}
        record["descriptor"] = kind
        log.info(
            "iteration %d: %d frames, window [%.4g, %.4g) %s, %s accurate, %s candidates, "
            "%d selected (%d audit, budget %d, %s descriptors)",
            iteration,
            len(docs),
            thresholds.lo,
            thresholds.hi,
            thresholds.source,
            selection.counts.get("accurate", 0),
            selection.counts.get("candidate", 0),
            len(chosen),
            len(audit_keys),
            selection.budget,
            kind,
        )
    store.put_iteration(ctx.campaign, iteration, {"selection": {**counts, **record}})
    return {
        "selected": chosen,
        "audit": audit_keys,
        "dropped_pending": pending["keys"],
        "counts": counts,
        "budget": counts["budget"],
        "thresholds": thresholds.as_doc(),
    }
