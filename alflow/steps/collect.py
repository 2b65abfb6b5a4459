"""Close an iteration: record its figures and decide whether the campaign goes on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alflow.labeling import make_labeler
from alflow.steps.context import StepContext

__all__ = ["Decision", "collect_iteration", "committee_errors"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What collect decided.

    Attributes
    ----------
    go_on
        Start the next iteration.
    status
        Campaign status: ``running``, ``converged``, ``stopped`` or ``failed``.
    reason
        Which rule decided, in words.
    """

    go_on: bool
    status: str
    reason: str


def committee_errors(
    predicted_forces: Sequence[np.ndarray],
    reference_forces: Sequence[np.ndarray],
    predicted_energy_eV: Sequence[float],
    reference_energy_eV: Sequence[float],
    n_atoms: Sequence[int],
) -> dict[str, float | None]:
    """Force RMSE (eV/Å) and energy MAE (meV/atom) of committee means against labels."""
    if not predicted_forces:
        return {"force_rmse_eV_A": None, "energy_mae_meV_atom": None, "n_frames": 0}
    diff = np.concatenate(
        [
            np.ravel(np.asarray(p) - np.asarray(r))
            for p, r in zip(predicted_forces, reference_forces, strict=True)
        ]
    )
    energy = np.abs(np.asarray(predicted_energy_eV) - np.asarray(reference_energy_eV)) / np.asarray(
        n_atoms
    )
    return {
        "force_rmse_eV_A": float(np.sqrt(np.mean(diff**2))),
        "energy_mae_meV_atom": float(1000.0 * np.mean(energy)),
        "n_frames": len(predicted_forces),
    }


def _decide(ctx: StepContext, iteration: int, figures: dict[str, Any], spent: int) -> Decision:
    loop = ctx.config.loop
    attempted = figures["labeled"] + figures["failed"]
    failed_fraction = figures["failed"] / attempted if attempted else 0.0
    rmse = figures["errors"]["force_rmse_eV_A"]
    max_failed = ctx.config.labeling.max_failed_fraction
    if attempted and failed_fraction > max_failed:
        return Decision(
            False,
            "failed",
            f"{figures['failed']} of {attempted} DFT jobs failed in iteration {iteration} "
            f"(more than labeling.max_failed_fraction = {max_failed:.2f}); see 'alflow status'",
        )
    accurate = figures["accurate_fraction"]
    if (
        accurate is not None
        and accurate >= loop.converged_accurate_fraction
        and (rmse is None or rmse <= loop.target_force_rmse_eV_A)
    ):
        return Decision(
            False,
            "converged",
            f"converged: {accurate:.1%} of frames accurate (≥ {loop.converged_accurate_fraction:.1%})"
            + ("" if rmse is None else f", force RMSE on new labels {rmse:.3f} eV/Å"),
        )
    if spent >= loop.max_dft_labels:
        return Decision(
            False, "stopped", f"DFT budget spent: {spent} of {loop.max_dft_labels} labels"
        )
    if iteration + 1 >= loop.max_iterations:
        return Decision(False, "stopped", f"iteration limit reached ({loop.max_iterations})")
    return Decision(True, "running", "next iteration")


def collect_iteration(
    ctx: StepContext, iteration: int, fizzled: Sequence[dict[str, Any]] = ()
) -> Decision:
    """Record the figures of ``iteration`` and decide what happens next.

    Parameters
    ----------
    ctx
        Store, campaign, settings and the launch directory.
    iteration
        The iteration to close.
    fizzled
        FireWorks' ``_fizzled_parents``: label jobs that crashed. Any of their
        structures still ``selected`` is recorded as failed with the error.

    Returns
    -------
    Decision
    """
    store, campaign = ctx.store, ctx.campaign
    for parent in fizzled:
        key = parent.get("spec", {}).get("structure_key")
        if key and store.structures.find_one(
            {"campaign": campaign, "key": key, "status": "selected"}
        ):
            error = _launch_error(parent)
            store.set_status(campaign, [key], "failed", reason=f"labeling job crashed: {error}")

    counts = {
        status: store.structures.count_documents(
            {
                "campaign": campaign,
                "iteration": iteration,
                "status": status,
                "origin.kind": "walker",
            }
        )
        for status in (
            "accurate",
            "candidate",
            "unphysical",
            "selected",
            "labeled",
            "failed",
            "rejected",
        )
    }
    explored = counts["accurate"] + counts["candidate"] + counts["unphysical"] + counts["selected"]
    explored += counts["labeled"] + counts["failed"] + counts["rejected"]
    parameters_hash = make_labeler(ctx.config.labeling.oracle, ctx.settings).parameters_hash()
    predicted, reference, e_pred, e_ref, n_atoms = [], [], [], [], []
    for doc in store.find_structures(
        {
            "campaign": campaign,
            "iteration": iteration,
            "status": "labeled",
            "committee": {"$exists": True},
        }
    ):
        label = store.label(doc["key"], parameters_hash)
        if label is None or not label.get("ok"):
            continue
        predicted.append(np.asarray(doc["committee"]["forces_eV_A"]))
        reference.append(np.asarray(label["forces_eV_A"]))
        e_pred.append(doc["committee"]["energy_eV"])
        e_ref.append(label["energy_eV"])
        n_atoms.append(doc["n_atoms"])
    spent = store.count_labels(campaign)
    figures: dict[str, Any] = {
        "campaign": campaign,
        "iteration": iteration,
        **counts,
        "explored": explored,
        "accurate_fraction": counts["accurate"] / explored if explored else None,
        "candidate_fraction": counts["candidate"] / explored if explored else None,
        "unphysical_fraction": counts["unphysical"] / explored if explored else None,
        "errors": committee_errors(predicted, reference, e_pred, e_ref, n_atoms),
        "labels_spent_total": spent,
        "trust_lo_eV_A": ctx.config.selection.trust_lo_eV_A,
        "trust_hi_eV_A": ctx.config.selection.trust_hi_eV_A,
    }
    decision = _decide(ctx, iteration, figures, spent)
    figures["decision"] = asdict(decision)
    store.put_iteration(campaign, iteration, figures)
    store.set_campaign_status(
        campaign, decision.status, None if decision.go_on else decision.reason
    )
    rmse = figures["errors"]["force_rmse_eV_A"]
    log.info(
        "iteration %d closed: %d labeled, %d failed, accurate %s, force RMSE on new labels %s → %s",
        iteration,
        counts["labeled"],
        counts["failed"],
        "n/a" if figures["accurate_fraction"] is None else f"{figures['accurate_fraction']:.0%}",
        "n/a" if rmse is None else f"{rmse:.3f} eV/Å",
        decision.reason,
    )
    return decision


def _launch_error(parent: dict[str, Any]) -> str:
    """The error text FireWorks stored for a fizzled parent, if any."""
    for launch in reversed(parent.get("launches", [])):
        stored = (launch.get("action") or {}).get("stored_data") or {}
        if stored.get("_exception"):
            details = stored["_exception"].get("_details") or stored["_exception"].get(
                "_stacktrace", ""
            )
            return str(details).strip().splitlines()[-1] if details else "unknown error"
    return "unknown error (no launch record)"
