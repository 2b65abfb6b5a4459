"""Run one MD walker with the iteration's committee and store its frames."""

from __future__ import annotations

import logging
from typing import Any

from ase import Atoms

from alflow.contacts import ContactLimits
from alflow.errors import ExplorationError
from alflow.exploration import WalkerResult, run_walker, walker_plan
from alflow.steps.context import StepContext
from alflow.store.store import as_float_list
from alflow.structures import atoms_from_doc, build_initial_structures, structure_key
from alflow.workcache import fingerprint, load_cached, save_cached

__all__ = ["explore_walker", "starting_structures"]

log = logging.getLogger(__name__)

MIN_MEMBERS = 2


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
        query = {"campaign": ctx.campaign, "status": "labeled", "iteration": {"$lt": iteration}}
        for doc in ctx.store.find_structures(query, {"key": 1, "atoms": 1}):
            starts.append((doc["key"], atoms_from_doc(doc["atoms"])))
    return starts


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
    store, config = ctx.store, ctx.config
    models = store.trained_models(ctx.campaign, iteration)
    if len(models) < MIN_MEMBERS:
        raise ExplorationError(
            f"iteration {iteration}: {len(models)} trained committee members, at least "
            f"{MIN_MEMBERS} are needed to estimate uncertainty"
        )
    model_ids = [m["_id"] for m in models]
    exploration = config.exploration
    # One member drives the MD (walker w: member w mod M, so the walkers of an
    # iteration follow every member's surface); the whole committee runs only
    # every committee_interval_steps. "mean": the committee mean at every step.
    propagator = walker % len(models) if exploration.propagator == "member" else None
    starts = starting_structures(ctx, iteration)
    plan = walker_plan(exploration.walkers, exploration, len(starts), iteration)[walker]
    start_label, atoms = starts[plan["start"]]
    inputs = fingerprint(
        [m["sha256"] for m in models],
        structure_key(atoms),
        plan,
        propagator,
        exploration.model_dump(mode="json"),
        config.selection.trust_hi_eV_A,
        ContactLimits.from_record(config.selection.sanity, models[0]).describe(),
        config.committee.training.dtype,
    )
    cache = ctx.workdir / "walker.result.pkl"
    result = load_cached(cache, inputs)
    if result is None:
        result = _run(ctx, models, propagator, atoms, plan)
        save_cached(cache, inputs, result)

    # A rerun of this walker replaces its own unlabeled frames, nothing else.
    store.delete_unlabeled(
        {"campaign": ctx.campaign, "origin.iteration": iteration, "origin.walker": walker}
    )
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
            "start": start_label,
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
        start_label,
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


def _run(
    ctx: StepContext,
    models: list[dict[str, Any]],
    propagator: int | None,
    atoms: Atoms,
    plan: dict[str, Any],
) -> WalkerResult:
    """Load the committee and run one walker."""
    config, exploration = ctx.config, ctx.config.exploration
    calc = ctx.load_committee(
        models, propagator=propagator, always_stress=exploration.ensemble == "npt"
    )
    return run_walker(
        atoms.copy(),
        calc,
        temperature_K=plan["temperature_K"],
        steps=exploration.steps,
        timestep_fs=exploration.timestep_fs,
        sample_interval_steps=exploration.sample_interval_steps,
        seed=plan["seed"],
        trust_hi_eV_A=config.selection.trust_hi_eV_A,
        min_distance_A=ContactLimits.from_record(config.selection.sanity, models[0]),
        max_temperature_factor=exploration.max_temperature_factor,
        ensemble=exploration.ensemble,
        pressure_GPa=plan["pressure_GPa"],
        friction_per_fs=exploration.friction_per_fs,
        committee_interval_steps=exploration.committee_every_steps,
    )
