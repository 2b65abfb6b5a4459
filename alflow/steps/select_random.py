"""The random baseline of selection (``selection.strategy: random``).

The same per-iteration budget as the committee strategy
(:func:`alflow.selection.iteration_budget`: the smaller of
``selection.max_per_iteration`` and what is left of ``loop.max_dft_labels``),
drawn uniformly at random from the iteration's explored frames that are new
and pass the same physical sanity checks (:func:`alflow.selection.new_and_sane`
with :func:`alflow.labeling.sanity_reason` and the contact limits of the
iteration's training data). No trust window, no audit frames, no diversity,
no re-scoring of queued frames: this is the loop of
``benchmarks/campaign_efficiency.py`` that alflow's selection is measured
against.

Statuses written: the drawn frames become ``selected`` (reason
:data:`DRAWN_REASON`); every other explored frame of the iteration becomes
``rejected`` with its reason (``sanity: ...`` or :data:`NOT_DRAWN_REASON`). The random strategy classifies nothing as
accurate, so a campaign that uses it never ends by the ``converged`` rule;
it ends by its label budget or iteration limit.
"""

from __future__ import annotations

import logging
import zlib
from functools import partial
from typing import Any

import numpy as np

from alflow.labeling import sanity_reason
from alflow.selection import iteration_budget, new_and_sane
from alflow.steps.context import StepContext
from alflow.steps.holdout import record_holdout_errors
from alflow.structures import atoms_from_doc

__all__ = ["DRAWN_REASON", "NOT_DRAWN_REASON", "random_seed", "select_random"]

log = logging.getLogger(__name__)

#: ``reason`` of a frame drawn by the random strategy (status ``selected``).
DRAWN_REASON = "random draw (selection.strategy random)"
#: ``reason`` of a sane frame the random strategy did not draw (status ``rejected``).
NOT_DRAWN_REASON = "not drawn (selection.strategy random)"


def random_seed(selection_seed: int, campaign: str, iteration: int) -> np.random.SeedSequence:
    """The seed of one iteration's draw: from ``selection.seed``, the campaign and the iteration.

    Parameters
    ----------
    selection_seed
        ``selection.seed`` of the campaign.
    campaign
        The campaign name (two campaigns with the same settings draw differently).
    iteration
        The iteration (each iteration draws differently).

    Returns
    -------
    numpy.random.SeedSequence
    """
    return np.random.SeedSequence([selection_seed, zlib.crc32(campaign.encode()), iteration])


def _sane(
    ctx: StepContext, iteration: int, docs: list[dict[str, Any]]
) -> tuple[list[int], dict[int, str]]:
    """Indices of the frames that are new and pass the sanity checks; the reasons of the others.

    The screen is the committee strategy's (:func:`alflow.selection.new_and_sane`
    with :func:`alflow.labeling.sanity_reason` and the contact limits of the
    iteration's training data). Explored frames are new to the campaign by
    construction (a structure key is stored once per campaign), so its
    de-duplication finds nothing unless that changes.
    """
    check = partial(
        sanity_reason, sanity=ctx.config.selection.sanity, limits=ctx.contact_limits(iteration)
    )
    screened = new_and_sane(
        np.arange(len(docs)),
        [atoms_from_doc(d["atoms"]) for d in docs],
        [d["key"] for d in docs],
        (),
        check,
    )
    return screened.sane, screened.rejected


def select_random(ctx: StepContext, iteration: int) -> dict[str, Any]:
    """Draw the iteration's label budget uniformly at random from its sane frames.

    Parameters
    ----------
    ctx
        Store, campaign, config, settings and the launch directory.
    iteration
        The iteration whose explored frames are selected.

    Returns
    -------
    dict
        The form of :func:`alflow.steps.select.select_for_labeling`:
        ``{"selected": [keys], "audit": [], "dropped_pending": [], "counts": {...},
        "budget": int, "thresholds": None, "strategy": "random"}``.
    """
    store, config = ctx.store, ctx.config
    budget = iteration_budget(config.selection, ctx.labels_left())
    if store.count_structures(ctx.campaign, status="holdout"):
        record_holdout_errors(ctx, iteration, ctx.iteration_committee(iteration))
    docs = list(
        store.structures_of(
            ctx.campaign, status="explored", iteration=iteration, fields=("key", "atoms")
        )
    )
    sane, rejected = _sane(ctx, iteration, docs)
    seed = random_seed(config.selection.seed, ctx.campaign, iteration)
    rng = np.random.default_rng(seed)
    drawn = sorted(int(i) for i in rng.choice(sane, size=min(budget, len(sane)), replace=False))
    chosen = [docs[i]["key"] for i in drawn]
    if chosen:
        store.set_status(ctx.campaign, chosen, "selected", reason=DRAWN_REASON)
    for index in sorted(set(sane) - set(drawn)):
        rejected[index] = NOT_DRAWN_REASON
    for index, reason in rejected.items():
        store.set_status(ctx.campaign, [docs[index]["key"]], "rejected", reason=reason)
    counts = {
        "explored": len(docs),
        "sane": len(sane),
        "selected": len(chosen),
        "audit": 0,
        "not_drawn": len(sane) - len(chosen),
        "rejected": len(rejected) - (len(sane) - len(chosen)),
        "budget": budget,
    }
    store.put_iteration(
        ctx.campaign,
        iteration,
        {"selection": {**counts, "strategy": "random", "seed_entropy": list(seed.entropy)}},
    )
    log.info(
        "iteration %d: %d frames, %d sane, %d drawn at random (budget %d)",
        iteration,
        len(docs),
        len(sane),
        len(chosen),
        budget,
    )
    return {
        "selected": chosen,
        "audit": [],
        "dropped_pending": [],
        "counts": counts,
        "budget": budget,
        "thresholds": None,
        "strategy": "random",
    }
