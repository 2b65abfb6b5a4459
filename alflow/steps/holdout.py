"""Errors of an iteration's committee on the campaign's held-out test set."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from alflow.steps.collect import committee_errors
from alflow.steps.context import StepContext
from alflow.structures import atoms_from_doc

__all__ = ["holdout_errors", "record_holdout_errors"]

log = logging.getLogger(__name__)


def holdout_errors(ctx: StepContext, committee: Any) -> dict[str, Any] | None:
    """Force RMSE (eV/Å) and energy MAE (meV/atom) of the committee mean on held-out frames.

    The held-out frames (status ``holdout``) are labeled before iteration 0
    and never trained on, so these errors are comparable across iterations:
    the learning curve of ``alflow report``.

    Returns
    -------
    dict or None
        :func:`alflow.steps.collect.committee_errors`' figures, None when the
        campaign has no labeled held-out frame.
    """
    parameters_hash = ctx.parameters_hash
    predicted, reference, e_pred, e_ref, n_atoms = [], [], [], [], []
    for doc in ctx.store.structures_of(
        ctx.campaign, status="holdout", fields=("key", "atoms", "n_atoms")
    ):
        label = ctx.store.label(doc["key"], parameters_hash)
        if label is None or not label.get("ok"):
            continue
        atoms = atoms_from_doc(doc["atoms"])
        atoms.calc = committee
        predicted.append(np.asarray(atoms.get_forces()))
        e_pred.append(float(atoms.get_potential_energy()))
        reference.append(np.asarray(label["forces_eV_A"]))
        e_ref.append(float(label["energy_eV"]))
        n_atoms.append(doc["n_atoms"])
    if not predicted:
        return None
    return committee_errors(predicted, reference, e_pred, e_ref, n_atoms)


def record_holdout_errors(
    ctx: StepContext, iteration: int, committee: Any | None
) -> dict[str, Any] | None:
    """Evaluate ``iteration``'s committee on the held-out frames and store it in the iteration.

    The learning curve of ``alflow report`` (``iterations.holdout_errors``);
    select records it for either strategy, as soon as the committee is
    trained. None (nothing stored) without a committee or held-out labels.
    """
    if committee is None or not ctx.store.count_structures(ctx.campaign, status="holdout"):
        return None
    errors = holdout_errors(ctx, committee)
    ctx.store.put_iteration(ctx.campaign, iteration, {"holdout_errors": errors})
    if errors is not None:
        log.info(
            "iteration %d committee on %d held-out frames: force RMSE %.3f eV/Å",
            iteration,
            errors["n_frames"],
            errors["force_rmse_eV_A"],
        )
    return errors
