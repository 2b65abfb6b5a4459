"""Close the final fit: the deploy committee, its data and its held-out errors.

The final fit's members (iteration ``FINAL``) are trained by
:func:`alflow.steps.train.train_committee_member` on every usable label, the
last iteration's included. :func:`finalize_fit` then records what they are:
``campaigns.final`` names the members, the labels they saw (count and
fingerprint) and their errors on the held-out set. That record is the
campaign's result: ``alflow status`` names it, ``alflow model export`` and
``alflow.load_potential`` read it.
"""

from __future__ import annotations

import logging
from typing import Any

from alflow.committee.uncertainty import MIN_MEMBERS
from alflow.steps.context import StepContext
from alflow.steps.holdout import holdout_errors
from alflow.steps.train import MIN_TRAINING_FRAMES, training_set_fingerprint, training_settings
from alflow.store.store import FINAL

__all__ = ["finalize_fit"]

log = logging.getLogger(__name__)


def finalize_fit(ctx: StepContext) -> dict[str, Any]:
    """Record the final fit in ``campaigns.final`` and return that record.

    With fewer than two trained members the record has ``status: failed``
    and the reason; otherwise ``status: trained``, the member ids, the number
    of labels and their fingerprint, the epochs and the held-out errors.
    """
    store, campaign = ctx.store, ctx.campaign
    models = store.trained_models(campaign, FINAL)
    frames = store.labeled_frames(campaign, ctx.parameters_hash)
    keys = [a.info["key"] for a in frames]
    last = [d["iteration"] for d in store.iteration_docs(campaign)]
    record: dict[str, Any] = {
        "members": [m["_id"] for m in models],
        "n_members": len(models),
        "n_labels": len(keys),
        "training_set_sha256": training_set_fingerprint(keys),
        "last_iteration": max(last) if last else None,
        "epochs": training_settings(ctx.config, FINAL).epochs,
        "parameters_hash": ctx.parameters_hash,
    }
    if len(models) < MIN_MEMBERS or len(keys) < MIN_TRAINING_FRAMES:
        failed = store.count_failed_models(campaign, FINAL)
        record.update(
            status="failed",
            reason=f"{len(models)} members trained ({failed} failed); at least "
            f"{MIN_MEMBERS} are needed: see 'alflow status' and the train logs",
        )
        store.put_final(campaign, record)
        log.warning("final fit of '%s' failed: %s", campaign, record["reason"])
        return record
    committee = ctx.load_committee(models)
    record["holdout_errors"] = holdout_errors(ctx, committee)
    record["status"] = "trained"
    store.put_final(campaign, record)
    holdout = record["holdout_errors"] or {}
    log.info(
        "final fit of '%s': %d members on %d labels, held-out force RMSE %s",
        campaign,
        len(models),
        len(keys),
        "n/a"
        if holdout.get("force_rmse_eV_A") is None
        else f"{holdout['force_rmse_eV_A']:.3f} eV/Å",
    )
    return record
