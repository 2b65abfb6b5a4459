"""Run the MD walkers of an iteration with its committee and store their frames.

:func:`explore_walker` runs one walker (``exploration.walkers_per_job`` 1);
:func:`explore_walkers` runs several together, one batched committee call
per step, and stores each walker's frames exactly as one-by-one would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ase import Atoms

from alflow.committee.uncertainty import MIN_MEMBERS
from alflow.contacts import ContactLimits
from alflow.errors import ExplorationError
from alflow.exploration import WalkerOptions, WalkerResult, batched, run_walker, walker_plan
from alflow.steps.context import StepContext
from alflow.store.store import as_float_list
from alflow.structures import atoms_from_doc, build_initial_structures, structure_key
from alflow.workcache import fingerprint, load_cached, save_cached

__all__ = ["explore_walker", "explore_walkers", "starting_structures"]

log = logging.getLogger(__name__)


def starting_structures(ctx: StepContext, iteration: int) -> list[tuple[str, Atoms]]:
    """Where walkers start: the initial structures, then frames labeled in earlier iterations.

    Returns
    -------
    list of (label, Atoms)
        ``label`` is ``initial[i]`` or the structure key.
    """
    config = ctx.config
    starts: list[tuple[str, Atoms]] = [
        (f"initial[{i}]", atoms)
        for i, atoms in enumerate(build_initial_structures(config.initial, config.base_dir))
    ]
    if config.exploration.start_from_labeled and iteration > 0:
        for doc in ctx.store.structures_of(
            ctx.campaign, status="labeled", before_iteration=iteration, fields=("key", "atoms")
        ):
            starts.append((doc["key"], atoms_from_doc(doc["atoms"])))
    return starts


@dataclass(frozen=True)
class _WalkerJob:
    """Everything one walker of an iteration needs, and its cache key."""

    walker: int
    plan: dict[str, Any]
    start_label: str
    atoms: Atoms
    propagator: int | None
    inputs: str


def _committee_models(ctx: StepContext, iteration: int) -> list[dict[str, Any]]:
    """The iteration's trained members (at least two)."""
    models = ctx.store.trained_models(ctx.campaign, iteration)
    if len(models) < MIN_MEMBERS:
        raise ExplorationError(
            f"iteration {iteration}: {len(models)} trained committee members, at least "
            f"{MIN_MEMBERS} are needed to estimate uncertainty"
        )
    return models


@dataclass(frozen=True)
class _Walkers:
    """The committee, the walkers to run and the options they share."""

    models: list[dict[str, Any]]
    jobs: list[_WalkerJob]
    options: WalkerOptions


def _prepare(ctx: StepContext, iteration: int, walkers: Sequence[int]) -> _Walkers:
    """Committee, jobs and shared options of ``walkers`` (the contact limits built once)."""
    models = _committee_models(ctx, iteration)
    limits = ContactLimits.from_record(ctx.config.selection.sanity, models[0])
    options = WalkerOptions.from_exploration(
        ctx.config.exploration,
        trust_hi_eV_A=ctx.config.selection.trust_hi_eV_A,
        min_distance_A=limits,
    )
    return _Walkers(models, _walker_jobs(ctx, iteration, walkers, models, limits), options)


def _walker_jobs(
    ctx: StepContext,
    iteration: int,
    walkers: Sequence[int],
    models: list[dict[str, Any]],
    limits: ContactLimits,
) -> list[_WalkerJob]:
    """Plan, start, propagating member and cache key of each walker."""
    config, exploration = ctx.config, ctx.config.exploration
    starts = starting_structures(ctx, iteration)
    plans = walker_plan(exploration.walkers, exploration, len(starts), iteration)
    jobs = []
    for walker in walkers:
        if not 0 <= walker < len(plans):
            raise ExplorationError(
                f"iteration {iteration}: no walker {walker} (exploration.walkers is "
                f"{exploration.walkers})"
            )
        # One member drives the MD (walker w: member w mod M, so the walkers of an
        # iteration follow every member's surface); the whole committee runs only
        # every committee_interval_steps. "mean": the committee mean at every step.
        propagator = walker % len(models) if exploration.propagator == "member" else None
        plan = plans[walker]
        start_label, atoms = starts[plan["start"]]
        inputs = fingerprint(
            [m["sha256"] for m in models],
            structure_key(atoms),
            plan,
            propagator,
            exploration.model_dump(mode="json"),
            config.selection.trust_hi_eV_A,
            limits.describe(),
            config.committee.training.dtype,
        )
        jobs.append(_WalkerJob(walker, plan, start_label, atoms, propagator, inputs))
    return jobs


def explore_walker(ctx: StepContext, iteration: int, walker: int) -> dict[str, Any]:
    """Run walker ``walker`` of ``iteration`` and store its sampled frames as ``explored``.

    Parameters
    ----------
    ctx
        Store, campaign, settings and the launch directory.
    iteration, walker
        Which walker; its temperature, pressure, start and seed come from
        :func:`alflow.exploration.walker_plan`.

    Returns
    -------
    dict
        ``{"walker", "n_frames", "steps_done", "stop_reason", "temperature_K", "wall_s",
        "committee_evaluations", "propagator_member"}``.

    Raises
    ------
    ExplorationError
        Fewer than two trained members.
    """
    prepared = _prepare(ctx, iteration, [walker])
    (job,) = prepared.jobs
    cache = ctx.workdir / "walker.result.pkl"
    result = load_cached(cache, job.inputs)
    if result is None:
        calc = ctx.load_committee(
            prepared.models,
            propagator=job.propagator,
            always_stress=prepared.options.ensemble == "npt",
        )
        result = run_walker(
            job.atoms.copy(),
            calc,
            temperature_K=job.plan["temperature_K"],
            seed=job.plan["seed"],
            pressure_GPa=job.plan["pressure_GPa"],
            options=prepared.options,
        )
        save_cached(cache, job.inputs, result)
    return _store_frames(ctx, iteration, job, prepared.models, result)


def explore_walkers(ctx: StepContext, iteration: int, walkers: Sequence[int]) -> list[dict]:
    """Run several walkers of ``iteration`` together and store each one's frames.

    The walkers advance side by side, their structures evaluated in one
    batched committee call per step
    (:func:`alflow.exploration.batched.run_walkers_batched`); each walker
    stops, samples and is stored exactly as :func:`explore_walker` does it
    alone (same origins, a rerun replaces only its own unlabeled frames).
    Each walker's result is cached on its own (``walker<w>.result.pkl``):
    a rerun runs only the walkers whose inputs changed or never finished.

    Parameters
    ----------
    ctx
        Store, campaign, settings and the launch directory.
    iteration
        The iteration.
    walkers
        Walker indices (``exploration.walkers_per_job`` of them in the loop).

    Returns
    -------
    list of dict
        Per walker, in the order given, :func:`explore_walker`'s summary.

    Raises
    ------
    ExplorationError
        Fewer than two trained members, an unknown walker, or a walker that
        failed (nothing is stored then).
    """
    prepared = _prepare(ctx, iteration, walkers)
    models, jobs = prepared.models, prepared.jobs
    caches = {job.walker: ctx.workdir / f"walker{job.walker}.result.pkl" for job in jobs}
    results = {job.walker: load_cached(caches[job.walker], job.inputs) for job in jobs}
    todo = [job for job in jobs if results[job.walker] is None]
    if todo:
        committee = ctx.load_committee(models)
        batch = [
            batched.BatchWalker(
                atoms=job.atoms.copy(),
                temperature_K=job.plan["temperature_K"],
                seed=job.plan["seed"],
                pressure_GPa=job.plan["pressure_GPa"],
                propagator=job.propagator,
            )
            for job in todo
        ]
        for job, result in zip(
            todo,
            batched.run_walkers_batched(batch, committee, options=prepared.options),
            strict=True,
        ):
            save_cached(caches[job.walker], job.inputs, result)
            results[job.walker] = result
    return [_store_frames(ctx, iteration, job, models, results[job.walker]) for job in jobs]


def _store_frames(
    ctx: StepContext,
    iteration: int,
    job: _WalkerJob,
    models: list[dict[str, Any]],
    result: WalkerResult,
) -> dict[str, Any]:
    """Replace the walker's unlabeled frames by ``result``'s; return its summary."""
    store, exploration = ctx.store, ctx.config.exploration
    walker, plan, propagator = job.walker, job.plan, job.propagator
    model_ids = [m["_id"] for m in models]
    # A rerun of this walker replaces its own unlabeled frames, nothing else.
    store.delete_unlabeled(ctx.campaign, {"origin.iteration": iteration, "origin.walker": walker})
    frames = [f.atoms for f in result.frames]
    keys = [structure_key(a) for a in frames]
    origins = [
        {
            "kind": "walker",
            "iteration": iteration,
            "walker": walker,
            "step": f.step,
            "time_fs": f.time_fs,
            "temperature_K": plan["temperature_K"],
            "pressure_GPa": plan["pressure_GPa"],
            "ensemble": exploration.ensemble,
            "instantaneous_temperature_K": f.temperature_K,
            "start": job.start_label,
            "model_ids": model_ids,
            "propagator_member": propagator,
        }
        for f in result.frames
    ]
    extras = [
        {
            "uncertainty": {
                "max_force_dev_eV_A": float(f.max_force_dev_eV_A),
                "energy_std_eV": float(f.energy_std_eV),
            },
            "committee": {
                "energy_eV": float(f.energy_eV),
                "forces_eV_A": as_float_list(f.forces_eV_A),
                "model_ids": model_ids,
            },
        }
        for f in result.frames
    ]
    n_new = store.add_structures(
        ctx.campaign,
        frames,
        keys,
        iteration=iteration,
        status="explored",
        origins=origins,
        extras=extras,
    )
    log.info(
        "iteration %d walker %d (%.0f K, start %s): %d steps, %d frames, %s",
        iteration,
        walker,
        plan["temperature_K"],
        job.start_label,
        result.steps_done,
        n_new,
        result.stop_reason or "ran to the end",
    )
    return {
        "walker": walker,
        "n_frames": n_new,
        "steps_done": result.steps_done,
        "stop_reason": result.stop_reason,
        "temperature_K": plan["temperature_K"],
        "wall_s": result.wall_s,
        "committee_evaluations": result.committee_evaluations,
        "propagator_member": propagator,
    }
