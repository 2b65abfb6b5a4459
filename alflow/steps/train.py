"""Train one committee member on every frame the campaign has labeled so far.

The same step trains the final fit's members (iteration ``FINAL``): every
usable label, the last iteration's included, with ``final.epochs``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

from alflow.committee import train_member, train_readouts
from alflow.committee.foundation import foundation_path
from alflow.config import CampaignConfig, TrainingConfig, config_hash
from alflow.contacts import mark_short_range
from alflow.errors import TrainingError
from alflow.steps.context import StepContext
from alflow.store.store import FINAL
from alflow.structures import shortest_pair_distances_A

__all__ = ["train_committee_member"]

log = logging.getLogger(__name__)

MIN_TRAINING_FRAMES = 2


def training_set_fingerprint(keys: list[str]) -> str:
    """sha256 of the sorted structure keys of a training set (models and the final fit)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def training_settings(config: CampaignConfig, iteration: int | str) -> TrainingConfig:
    """The campaign's training settings; the final fit's epochs for ``FINAL``."""
    training = config.committee.training
    if iteration != FINAL:
        return training
    epochs = config.final.epochs or 2 * training.epochs
    return training.model_copy(update={"epochs": epochs})


def _previous_member(ctx: StepContext, iteration: int | str, member: int) -> dict | None:
    """The record a ``restart: continue`` member starts from (the latest earlier one)."""
    query: dict[str, Any] = {"campaign": ctx.campaign, "member": member, "status": "trained"}
    if iteration != FINAL:
        if iteration == 0:
            return None
        query["iteration"] = iteration - 1
    else:
        query["iteration"] = {"$type": "number"}
    records = list(ctx.store.models.find(query).sort("iteration", -1).limit(1))
    return records[0] if records else None


def _shared_body_base(
    ctx: StepContext, iteration: int | str, member: int, meta: dict[str, Any]
) -> dict | None:
    """Member 0's record of this iteration when ``member`` fits readouts on its body.

    None unless ``committee.kind`` is ``shared_body`` and ``member`` > 0.

    Raises
    ------
    TrainingError
        Member 0 of the iteration has not trained (recorded as this member's failure).
    """
    if ctx.config.committee.kind != "shared_body" or member == 0:
        return None
    records = [r for r in ctx.store.trained_models(ctx.campaign, iteration) if r["member"] == 0]
    if not records:
        error = "committee.kind shared_body: member 0 of this iteration has not trained"
        ctx.store.record_failed_model(ctx.campaign, iteration, member, error, meta)
        raise TrainingError(f"member {member} of iteration {iteration}: {error}")
    meta["shared_body_of"] = records[0]["_id"]
    return records[0]


def _readouts_trainer(ctx: StepContext, base: dict) -> Any:
    """A ``train_member``-like callable fitting readouts on ``base``'s frozen body."""
    base_path = ctx.store.fetch_model(base["_id"], ctx.workdir / "shared_body")

    def train(frames: Any, *, training: TrainingConfig, seed: int, **options: Any) -> Any:
        trained = train_readouts(
            frames,
            base_model=base_path,
            training=training,
            seed=seed,
            workdir=options["workdir"],
            device=options["device"],
            threads=options["threads"],
            name=options["name"],
            start_readouts=options.get("previous_model"),  # this member's last readouts
        )
        trained.hyperparameters["repulsion"] = base.get("repulsion")  # member 0's prior, kept
        trained.hyperparameters["shared_body_of"] = base["_id"]
        return trained

    return train


def train_committee_member(ctx: StepContext, iteration: int | str, member: int) -> dict[str, Any]:
    """Train member ``member`` of iteration ``iteration`` (or ``FINAL``) and store its model.

    Parameters
    ----------
    ctx
        Store, campaign, settings and the launch directory.
    iteration, member
        Which model (model id ``<campaign>/itNNN/mMM`` or ``<campaign>/final/mMM``).

    Returns
    -------
    dict
        ``{"model_id", "member", "n_train", "valid_rmse_forces_meV_A"}``.

    Raises
    ------
    TrainingError
        Too few labeled frames, or MACE failed; the failure is recorded.
    """
    store, config = ctx.store, ctx.config
    committee = config.committee
    training = training_settings(config, iteration)
    parameters_hash = ctx.parameters_hash
    frames = store.labeled_frames(ctx.campaign, parameters_hash)
    seed = committee.seed + member
    meta: dict[str, Any] = {"seed": seed, "parameters_hash": parameters_hash}
    if len(frames) < MIN_TRAINING_FRAMES:
        error = f"only {len(frames)} labeled frames; at least {MIN_TRAINING_FRAMES} are needed"
        store.record_failed_model(ctx.campaign, iteration, member, error, meta)
        raise TrainingError(f"member {member} of iteration {iteration}: {error}")
    shortest_A = shortest_pair_distances_A(frames, cutoff_A=committee.model.r_max_A)
    meta["n_short_range"] = mark_short_range(frames, config.initial.short_range.loss_weight)
    if training.bootstrap:
        salt = 7919 * (10**6 if iteration == FINAL else iteration)
        rng = np.random.default_rng(seed + salt)
        frames = [frames[i] for i in rng.integers(0, len(frames), len(frames))]
    keys = sorted(a.info["key"] for a in frames)
    meta["training_set_sha256"] = training_set_fingerprint(keys)
    meta["n_frames"] = len(frames)

    previous = None
    if training.restart == "continue":
        record = _previous_member(ctx, iteration, member)
        if record is not None:
            previous = store.fetch_model(record["_id"], ctx.workdir / "previous")
            meta["continued_from"] = record["_id"]

    e0s_eV = store.reference_energies(parameters_hash) or None
    base = _shared_body_base(ctx, iteration, member, meta)
    trainer = train_member if base is None else _readouts_trainer(ctx, base)
    try:
        trained = trainer(
            frames,
            model=committee.model,
            training=training,
            seed=seed,
            workdir=ctx.workdir,
            e0s_eV=e0s_eV,
            previous_model=previous,
            foundation=foundation_path(config),  # used only where previous is None
            device=ctx.settings.device,
            threads=ctx.settings.torch_threads,
            name=f"member{member:02d}",
        )
    except TrainingError as exc:
        store.record_failed_model(ctx.campaign, iteration, member, str(exc), meta)
        raise
    meta["shortest_training_distance_A"] = {"-".join(k): v for k, v in sorted(shortest_A.items())}
    meta["repulsion"] = trained.hyperparameters.get("repulsion")
    meta.update(
        {
            "hyperparameters": trained.hyperparameters,
            "hyperparameters_hash": config_hash(trained.hyperparameters),
            "n_train": trained.n_train,
            "n_valid": trained.n_valid,
            "valid_rmse_energy_meV_atom": trained.valid_rmse_energy_meV_atom,
            "valid_rmse_forces_meV_A": trained.valid_rmse_forces_meV_A,
            "wall_s": trained.wall_s,
            "e0s_eV": e0s_eV,
        }
    )
    model_id = store.put_model(ctx.campaign, iteration, member, trained.model_path, meta)
    log.info(
        "iteration %s member %d trained on %d frames in %.1f s (valid force RMSE %s meV/Å)",
        iteration,
        member,
        trained.n_train,
        trained.wall_s,
        trained.valid_rmse_forces_meV_A,
    )
    return {
        "model_id": model_id,
        "member": member,
        "n_train": trained.n_train,
        "valid_rmse_forces_meV_A": trained.valid_rmse_forces_meV_A,
    }
