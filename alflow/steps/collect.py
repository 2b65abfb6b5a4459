"""Close an iteration: record its figures and decide whether the campaign goes on.

Stopping rules, checked in this order (the first that holds ends the
campaign; ``decision.rule`` names it and ``decision.reason`` says it in words):

``failed_labels``
    More than ``labeling.max_failed_fraction`` of the iteration's DFT jobs failed.
``converged``
    Over the last ``loop.converged_window_iterations`` iterations (pooled),
    the fraction of explored frames in the accurate class (audit frames
    count as accurate) is at least ``loop.converged_accurate_fraction``, and
    the committee's force RMSE on this iteration's new labels is at most
    ``loop.target_force_rmse_eV_A`` (or there are no new labels).
``dft_budget``
    ``loop.max_dft_labels`` labels spent.
``iteration_limit``
    ``loop.max_iterations`` iterations run.

A collect that runs again (``lpad rerun_fws`` of one of its label
Fireworks, a lost run, ``--retry-fizzled``) closes an iteration that may
have been closed already:

- if that iteration's recorded decision was to go on, the campaign has moved
  past it and later iterations own its status: the recorded figures and
  decision stand, the campaign's status is left as it is, and the recorded
  decision is returned (the caller adds the next iteration only if it is
  missing, e.g. after a crash between the two);
- if the campaign ended at that iteration, it is decided again from the
  store: the same data give the same end (an ended campaign stays ended);
  labels that changed since (failed ones rerun) may let it go on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from alflow.calibration import frame_force_error_eV_A, spearman
from alflow.selection import score_frames
from alflow.steps.context import StepContext
from alflow.store.store import CLASSIFIED_STATUSES

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
    rule
        ``failed_labels``, ``converged``, ``dft_budget``, ``iteration_limit``
        or ``next`` (the campaign goes on).
    """

    go_on: bool
    status: str
    reason: str
    rule: str = "next"


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


def pooled_accurate_fraction(
    figures: dict[str, Any], previous: Sequence[dict[str, Any]], window_iterations: int
) -> tuple[float | None, int]:
    """Accurate fraction pooled over the current and the previous ``window - 1`` iterations.

    Parameters
    ----------
    figures
        The current iteration's figures (``accurate_class``, ``explored``).
    previous
        Earlier iteration documents, in order.
    window_iterations
        How many iterations to pool.

    Returns
    -------
    fraction, n_iterations
        None when no frame was explored in the window; ``n_iterations`` is
        how many iterations the window holds (fewer than asked early on).
    """
    docs = (
        [*list(previous)[-(window_iterations - 1) :], figures]
        if window_iterations > 1
        else [figures]
    )
    accurate = sum(int(d.get("accurate_class", d.get("accurate")) or 0) for d in docs)
    explored = sum(int(d.get("explored") or 0) for d in docs)
    return (accurate / explored if explored else None), len(docs)


def _decide(
    ctx: StepContext,
    iteration: int,
    figures: dict[str, Any],
    spent: int,
    previous: Sequence[dict[str, Any]] = (),
) -> Decision:
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
            "failed_labels",
        )
    window = loop.converged_window_iterations
    accurate, n_window = pooled_accurate_fraction(figures, previous, window)
    figures["accurate_fraction_window"] = accurate
    if (
        accurate is not None
        and n_window >= window
        and accurate >= loop.converged_accurate_fraction
        and (rmse is None or rmse <= loop.target_force_rmse_eV_A)
    ):
        over = "" if window == 1 else f" over the last {window} iterations"
        return Decision(
            False,
            "converged",
            f"converged: {accurate:.1%} of frames accurate{over} "
            f"(≥ {loop.converged_accurate_fraction:.1%})"
            + (
                ", no new labels"
                if rmse is None
                else f", force RMSE on new labels {rmse:.3f} eV/Å "
                f"(≤ {loop.target_force_rmse_eV_A:g})"
            ),
            "converged",
        )
    if spent >= loop.max_dft_labels:
        return Decision(
            False,
            "stopped",
            f"DFT budget spent: {spent} of {loop.max_dft_labels} labels",
            "dft_budget",
        )
    if iteration + 1 >= loop.max_iterations:
        return Decision(
            False,
            "stopped",
            f"iteration limit reached ({loop.max_iterations})",
            "iteration_limit",
        )
    return Decision(True, "running", "next iteration", "next")


@dataclass
class _NewLabels:
    """The iteration's newly labeled walker frames: committee prediction against label."""

    predicted_eV_A: list[np.ndarray] = field(default_factory=list)
    reference_eV_A: list[np.ndarray] = field(default_factory=list)
    predicted_energy_eV: list[float] = field(default_factory=list)
    reference_energy_eV: list[float] = field(default_factory=list)
    n_atoms: list[int] = field(default_factory=list)
    deviation_eV_A: list[float] = field(default_factory=list)
    frame_errors_eV_A: list[float] = field(default_factory=list)
    audit: list[bool] = field(default_factory=list)

    def errors(self, audit_only: bool = False) -> dict[str, float | None]:
        """:func:`committee_errors` of all frames, or of the audit frames only."""
        keep = [a or not audit_only for a in self.audit]

        def pick(values: list[Any]) -> list[Any]:
            return [v for v, k in zip(values, keep, strict=True) if k]

        return committee_errors(
            pick(self.predicted_eV_A),
            pick(self.reference_eV_A),
            pick(self.predicted_energy_eV),
            pick(self.reference_energy_eV),
            pick(self.n_atoms),
        )


def _new_labels(ctx: StepContext, iteration: int) -> _NewLabels:
    """Committee prediction and successful label of every frame labeled in ``iteration``."""
    new = _NewLabels()
    for doc in ctx.store.labeled_frames_of_iteration(ctx.campaign, iteration):
        label = ctx.store.label(doc["key"], ctx.parameters_hash)
        if label is None or not label.get("ok"):
            continue
        new.predicted_eV_A.append(np.asarray(doc["committee"]["forces_eV_A"]))
        new.reference_eV_A.append(np.asarray(label["forces_eV_A"]))
        new.predicted_energy_eV.append(doc["committee"]["energy_eV"])
        new.reference_energy_eV.append(label["energy_eV"])
        new.n_atoms.append(doc["n_atoms"])
        deviation = (doc.get("uncertainty") or {}).get("max_force_dev_eV_A", np.nan)
        new.deviation_eV_A.append(float(deviation))
        new.frame_errors_eV_A.append(
            frame_force_error_eV_A(new.predicted_eV_A[-1], new.reference_eV_A[-1])
        )
        new.audit.append(bool(doc.get("audit")))
    return new


def _calibration_check(
    new: _NewLabels, scores: np.ndarray, lo: float | None, target_eV_A: float
) -> dict[str, Any]:
    """How the window's deviation ranked the new labels' true errors (the calibration check)."""
    errors = np.asarray(new.frame_errors_eV_A, dtype=float)
    below = None if lo is None else scores < lo
    return {
        "n": len(new.frame_errors_eV_A),
        "spearman": spearman(scores, new.frame_errors_eV_A),
        "scores": [float(v) for v in scores],
        "errors_eV_A": new.frame_errors_eV_A,
        "audit": new.audit,
        "trust_lo": lo,
        "target_force_error_eV_A": target_eV_A,
        # share of the labeled frames below the window whose error met the target
        "below_lo_within_target": (
            None
            if below is None or not np.any(below)
            else float(np.mean(errors[below] <= target_eV_A))
        ),
    }


def _iteration_figures(
    ctx: StepContext, iteration: int, counts: dict[str, int], new: _NewLabels, spent: int
) -> dict[str, Any]:
    """The iteration document's figures (before the decision is added)."""
    store, campaign, selection_config = ctx.store, ctx.campaign, ctx.config.selection
    iteration_doc = store.iteration_doc(campaign, iteration) or {}
    thresholds = (iteration_doc.get("selection") or {}).get("thresholds") or {}
    scores = score_frames(
        np.asarray(new.deviation_eV_A, dtype=float), new.predicted_eV_A, selection_config
    )
    n_audit_total = store.count_audit(campaign, iteration)
    explored = sum(counts.values())
    figures: dict[str, Any] = {
        "campaign": campaign,
        "iteration": iteration,
        **counts,
        "explored": explored,
        "accurate_fraction": None,
        "candidate_fraction": counts["candidate"] / explored if explored else None,
        "unphysical_fraction": counts["unphysical"] / explored if explored else None,
        "accurate_class": counts["accurate"] + n_audit_total,
        "audit": n_audit_total,
        "errors": new.errors(),
        "errors_audit": new.errors(audit_only=True),
        "calibration_check": _calibration_check(
            new, scores, thresholds.get("lo"), selection_config.target_force_error_eV_A
        ),
        "labels_spent_total": spent,
        "trust_lo_eV_A": thresholds.get("lo", selection_config.trust_lo_eV_A),
        "trust_hi_eV_A": thresholds.get("hi", selection_config.trust_hi_eV_A),
        "trust_source": thresholds.get("source", "fixed"),
        "deviation": selection_config.deviation,
    }
    if explored:
        figures["accurate_fraction"] = figures["accurate_class"] / explored
    return figures


def collect_iteration(
    ctx: StepContext, iteration: int, crashed: Sequence[tuple[str, str]] = ()
) -> Decision:
    """Record the figures of ``iteration`` and decide what happens next.

    An iteration closed before with the decision to go on is not closed again
    (a rerun): its recorded decision is returned and nothing is written but
    the crashed label jobs' failures.

    Parameters
    ----------
    ctx
        Store, campaign, settings and the launch directory.
    iteration
        The iteration to close.
    crashed
        (structure key, error) of label jobs that crashed without recording
        anything; a structure still ``selected`` is recorded as failed with the error.

    Returns
    -------
    Decision
    """
    store, campaign = ctx.store, ctx.campaign
    for key, error in crashed:
        if store.is_selected(campaign, key):
            store.set_status(campaign, [key], "failed", reason=f"labeling job crashed: {error}")
    went_on = _recorded_go_on(store, campaign, iteration)
    if went_on is not None:
        log.info(
            "iteration %d was closed already and the campaign went on: "
            "its figures and the campaign's status stay as they are",
            iteration,
        )
        return went_on

    counts = store.walker_status_counts(campaign, iteration, CLASSIFIED_STATUSES)
    spent = store.count_labels(campaign)
    figures = _iteration_figures(ctx, iteration, counts, _new_labels(ctx, iteration), spent)
    previous = [
        d
        for d in store.iteration_docs(campaign)
        if d["iteration"] < iteration and d.get("decision") is not None
    ]
    decision = _decide(ctx, iteration, figures, spent, previous)
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


def _recorded_go_on(store: Any, campaign: str, iteration: int) -> Decision | None:
    """The recorded decision of ``iteration`` if it was to go on, else None."""
    doc = store.iteration_doc(campaign, iteration)
    recorded = (doc or {}).get("decision") or {}
    if not recorded.get("go_on"):
        return None
    return Decision(
        True,
        str(recorded.get("status", "running")),
        str(recorded.get("reason", "next iteration")),
        str(recorded.get("rule", "next")),
    )
