"""Errors of an iteration's committee on the campaign's held-out test set."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from alflow.steps.collect import committee_errors
from alflow.steps.context import StepContext
from alflow.structures import atoms_from_doc

__all__ = ["holdout_errors"]

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
