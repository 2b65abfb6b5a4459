"""MD walkers driven by a committee calculator, stopped by observers.

A walker runs Langevin molecular dynamics (NVT, or NPT with a Langevin
barostat) with a committee calculator attached. Two kinds of calculator:

- a *propagating* committee (``calc.propagator`` is a member index and the
  calculator has ``evaluate_committee(atoms)``, as
  :class:`~alflow.committee.CommitteeCalculator` with ``propagator=m``):
  member *m* alone drives every MD step and the whole committee is evaluated
  only every ``committee_interval_steps`` steps, on the graph member *m*
  already built. With M members and an interval of k steps a step costs
  ``1 + (M - 1)/k`` model evaluations instead of M;
- any other committee calculator (committee mean at every call): its
  committee results are there at every step, for free.

Observers that stop the walker:

- the committee's force uncertainty reaches ``trust_hi_eV_A`` (at every full
  committee evaluation),
- two atoms come closer than ``min_distance_A`` (at full evaluations),
- the kinetic temperature exceeds ``max_temperature_factor × temperature_K``
  (every step),
- energy, forces, positions or the uncertainty are not finite (every step).

Frames are saved at step 0 and every ``sample_interval_steps`` steps, which
``committee_interval_steps`` must divide: every saved frame carries the real
committee mean forces, energy deviation and force deviation.

Resolution guarantee. Every step that is a multiple of
``committee_interval_steps`` (every sampled step among them) is evaluated by
the whole committee at exactly the configuration the trajectory reached, and
the walker stops at the first such step at or above ``trust_hi_eV_A``. So no
frame that would be sampled lies past a crossing, and no crossing at a
sampled step goes unseen. What is not guaranteed is seeing an excursion that
starts and ends strictly between two full evaluations; set
``committee_interval_steps`` smaller (down to 1) to resolve those.

The loop follows the mlipx pattern ``for _ in dyn.irun(steps): ... if stop:
break``. The frame at which an uncertainty, distance or temperature check
fires is kept (``stopped=True``, with full committee results, evaluated for
it if needed) so that selection can record it as failed; nothing after the
last accepted sample but that frame is kept. A non-finite state keeps no
frame.

Examples
--------
>>> from ase.build import bulk
>>> result = run_walker(bulk("Cu", cubic=True) * 2, committee_calc, temperature_K=300,
...                     steps=100, timestep_fs=2, sample_interval_steps=10, seed=1,
...                     trust_hi_eV_A=0.5, min_distance_A=1.5,
...                     max_temperature_factor=3)  # doctest: +SKIP
>>> len(result.frames), result.stop_reason  # doctest: +SKIP
(11, None)
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.md import MolecularDynamics

from alflow.config import ExplorationConfig
from alflow.contacts import ContactLimits
from alflow.errors import ExplorationError
from alflow.exploration.observers import (
    check_min_distance,
    check_non_finite,
    check_temperature,
    check_uncertainty,
    max_force_deviation_eV_A,
)

__all__ = ["Frame", "WalkerResult", "run_walker", "walker_plan", "walker_seed"]

logger = logging.getLogger(__name__)

_ENSEMBLES = ("nvt", "npt")


@dataclass
class Frame:
    """One sampled configuration of a walker with the committee's predictions.

    Attributes
    ----------
    atoms
        Copy of the configuration (positions, cell, momenta), no calculator.
    step
        MD step at which it was sampled.
    time_fs
        Simulated time (fs).
    temperature_K
        Instantaneous kinetic temperature (K).
    energy_eV
        Committee-mean potential energy (eV).
    energy_std_eV
        Committee standard deviation of the energy (eV); NaN if unknown.
    max_force_dev_eV_A
        Largest per-atom force deviation of the committee (eV/Å).
    forces_eV_A
        Committee-mean forces (eV/Å), shape (N, 3).
    stopped
        True for the frame at which an observer stopped the walker (it is the
        last frame; its uncertainty may lie outside the trust window).
    """

    atoms: Atoms
    step: int
    time_fs: float
    temperature_K: float
    energy_eV: float
    energy_std_eV: float
    max_force_dev_eV_A: float
    forces_eV_A: np.ndarray
    stopped: bool = False


@dataclass
class WalkerResult:
    """What a walker produced.

    Attributes
    ----------
    frames
        Frames at step 0 and every ``sample_interval_steps`` steps, plus the
        frame that stopped the walker (``Frame.stopped``), if any.
    stop_reason
        None when all steps ran; otherwise why the walker stopped, e.g.
        ``"uncertainty 0.83 eV/Å >= trust_hi 0.5 at step 120"``.
    steps_done
        MD steps completed.
    wall_s
        Wall time (s).
    committee_evaluations
        Full committee evaluations the walker asked for (every step for a
        calculator that always evaluates the whole committee).
    """

    frames: list[Frame]
    stop_reason: str | None
    steps_done: int
    wall_s: float
    committee_evaluations: int = 0


def _validate(
    atoms: Atoms,
    *,
    temperature_K: float,
    steps: int,
    timestep_fs: float,
    sample_interval_steps: int,
    committee_interval_steps: int,
    max_temperature_factor: float,
    ensemble: str,
    friction_per_fs: float,
    barostat_time_fs: float,
) -> None:
    """Raise ExplorationError for arguments MD cannot run with."""
    problems = []
    if len(atoms) == 0:
        problems.append("no atoms")
    if not (math.isfinite(temperature_K) and temperature_K > 0):
        problems.append(f"temperature_K must be > 0, got {temperature_K}")
    if steps < 0:
        problems.append(f"steps must be >= 0, got {steps}")
    if not (math.isfinite(timestep_fs) and timestep_fs > 0):
        problems.append(f"timestep_fs must be > 0, got {timestep_fs}")
    if sample_interval_steps < 1:
        problems.append(f"sample_interval_steps must be >= 1, got {sample_interval_steps}")
    elif committee_interval_steps < 1 or sample_interval_steps % committee_interval_steps:
        problems.append(
            f"committee_interval_steps must be >= 1 and divide sample_interval_steps "
            f"({sample_interval_steps}), got {committee_interval_steps}"
        )
    if not max_temperature_factor > 1:
        problems.append(f"max_temperature_factor must be > 1, got {max_temperature_factor}")
    if not friction_per_fs > 0:
        problems.append(f"friction_per_fs must be > 0, got {friction_per_fs}")
    if ensemble not in _ENSEMBLES:
        problems.append(f"ensemble must be one of {_ENSEMBLES}, got {ensemble!r}")
    if ensemble == "npt":
        if not atoms.pbc.all():
            problems.append(f"NPT needs a 3D-periodic cell, got pbc={atoms.pbc.tolist()}")
        if not barostat_time_fs > 0:
            problems.append(f"barostat_time_fs must be > 0, got {barostat_time_fs}")
    if problems:
        raise ExplorationError("cannot run walker: " + "; ".join(problems))


def _make_dynamics(
    atoms: Atoms,
    *,
    ensemble: str,
    temperature_K: float,
    timestep_fs: float,
    friction_per_fs: float,
    pressure_GPa: float,
    barostat_time_fs: float,
    rng: np.random.Generator,
) -> MolecularDynamics:
    """The ASE integrator for an ensemble (calls the calculator once)."""
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        return Langevin(
            atoms,
            timestep_fs * units.fs,
            temperature_K=temperature_K,
            friction=friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
    from ase.md.langevinbaoab import LangevinBAOAB

    with warnings.catch_warnings():
        # The barostat mass comes from ASE's documented heuristic for P_tau.
        warnings.filterwarnings("ignore", message="Using heuristic P_mass")
        return LangevinBAOAB(
            atoms,
            timestep_fs * units.fs,
            temperature_K=temperature_K,
            externalstress=-pressure_GPa * units.GPa,  # stress = -pressure
            hydrostatic=True,
            T_tau=units.fs / friction_per_fs,
            P_tau=barostat_time_fs * units.fs,
            rng=rng,
        )


def _energy_std_eV(results: Mapping[str, Any]) -> float:
    """Committee energy standard deviation (eV) from calculator results."""
    if "energy_std" in results:
        return float(results["energy_std"])
    if "energy_comm" in results:
        return float(np.std(np.asarray(results["energy_comm"], dtype=float)))
    return float("nan")


def _frame(
    atoms: Atoms, results: Mapping[str, Any], *, step: int, timestep_fs: float, stopped: bool
) -> Frame:
    """Snapshot the walker's current state into a Frame."""
    snapshot = atoms.copy()
    snapshot.calc = None
    forces = np.array(results["forces"], dtype=float)
    max_force_dev = max_force_deviation_eV_A(results)
    energy_std = _energy_std_eV(results)
    # A calculator that computed forces only is asked for the energy (may recompute).
    energy = results["energy"] if "energy" in results else atoms.get_potential_energy()
    return Frame(
        atoms=snapshot,
        step=int(step),
        time_fs=float(step * timestep_fs),
        temperature_K=float(atoms.get_temperature()),
        energy_eV=float(energy),
        energy_std_eV=energy_std,
        max_force_dev_eV_A=max_force_dev,
        forces_eV_A=forces,
        stopped=stopped,
    )


def _is_propagating(calc: Calculator) -> bool:
    """True for a committee calculator whose calls run one member only."""
    return getattr(calc, "propagator", None) is not None and callable(
        getattr(calc, "evaluate_committee", None)
    )


def run_walker(
    atoms: Atoms,
    calc: Calculator,
    *,
    temperature_K: float,
    steps: int,
    timestep_fs: float,
    sample_interval_steps: int,
    seed: int,
    trust_hi_eV_A: float,
    min_distance_A: ContactLimits | float,
    max_temperature_factor: float,
    ensemble: str = "nvt",
    pressure_GPa: float = 0.0,
    friction_per_fs: float = 0.01,
    progress: Callable[[int, int], None] | None = None,
    barostat_time_fs: float = 1000.0,
    committee_interval_steps: int | None = None,
) -> WalkerResult:
    """Run one MD walker with a committee calculator until done or stopped.

    Parameters
    ----------
    atoms
        Starting configuration; it is copied, never modified.
    calc
        Committee calculator. Either propagating (``calc.propagator`` a member
        index, ``calc.evaluate_committee(atoms)`` returning the committee keys)
        or one whose every call returns the committee keys: ``energy``,
        ``forces`` (committee means), ``max_force_dev`` (eV/Å) or
        ``forces_comm`` (M, N, 3). ``stress`` for NPT.
    temperature_K
        Thermostat target (K); velocities start Maxwell–Boltzmann at it.
    steps
        MD steps to run.
    timestep_fs
        Time step (fs).
    sample_interval_steps
        A frame is kept at step 0 and every this many steps.
    seed
        Seeds the initial velocities and the Langevin noise.
    trust_hi_eV_A
        Stop when the committee's max force deviation reaches it (eV/Å).
    min_distance_A
        Stop when two atoms are closer than their pair's limit (Å; one number
        or :class:`~alflow.contacts.ContactLimits`); checked at full committee
        evaluations.
    max_temperature_factor
        Stop when the kinetic temperature exceeds this × ``temperature_K``.
    ensemble
        ``"nvt"``: Langevin (:class:`ase.md.langevin.Langevin`). ``"npt"``:
        isotropic Langevin barostat (:class:`ase.md.langevinbaoab.LangevinBAOAB`,
        Quigley–Probert Langevin–Hoover with BAOAB), 3D-periodic cells only.
    pressure_GPa
        External pressure for NPT (GPa).
    friction_per_fs
        Langevin friction (1/fs); NPT uses the time constant ``1/friction``.
    progress
        Called with ``(step, steps)`` at every sample step.
    barostat_time_fs
        NPT only: time constant of the cell fluctuations (fs).
    committee_interval_steps
        Full committee evaluation (and uncertainty check) every this many
        steps; must divide ``sample_interval_steps``. None: every sample step.
        A calculator that is not propagating is checked at every step anyway.

    Returns
    -------
    WalkerResult

    Raises
    ------
    ExplorationError
        Invalid arguments (non-periodic NPT, unknown ensemble, ...), a
        calculator that is not a committee, or a calculator failure.
    """
    committee_every = committee_interval_steps or sample_interval_steps
    _validate(
        atoms,
        temperature_K=temperature_K,
        steps=steps,
        timestep_fs=timestep_fs,
        sample_interval_steps=sample_interval_steps,
        committee_interval_steps=committee_every,
        max_temperature_factor=max_temperature_factor,
        ensemble=ensemble,
        friction_per_fs=friction_per_fs,
        barostat_time_fs=barostat_time_fs,
    )
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    start_s = time.perf_counter()
    velocity_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    work = atoms.copy()
    work.calc = calc
    MaxwellBoltzmannDistribution(
        work, temperature_K=temperature_K, rng=np.random.default_rng(velocity_seed)
    )
    Stationary(work)
    propagating = _is_propagating(calc)

    frames: list[Frame] = []
    stop_reason: str | None = None
    step = 0
    n_committee = 0
    try:
        dyn = _make_dynamics(
            work,
            ensemble=ensemble,
            temperature_K=temperature_K,
            timestep_fs=timestep_fs,
            friction_per_fs=friction_per_fs,
            pressure_GPa=pressure_GPa,
            barostat_time_fs=barostat_time_fs,
            rng=np.random.default_rng(noise_seed),
        )

        def committee_now() -> Mapping[str, Any]:
            nonlocal n_committee
            n_committee += 1
            if propagating:
                return calc.evaluate_committee(work)  # type: ignore[attr-defined]
            return work.calc.results

        for _ in dyn.irun(steps):
            step = int(dyn.nsteps)
            work.get_forces()  # cached: the integrator computed them at these positions
            reason = check_non_finite(work, work.calc.results, step)
            if reason is not None:
                stop_reason = reason
                break
            full = step % committee_every == 0 or not propagating
            sample = step % sample_interval_steps == 0
            committee: Mapping[str, Any] | None = None
            if full:
                committee = committee_now()
                reason = check_non_finite(work, committee, step)
                uncertainty = max_force_deviation_eV_A(committee)
                if reason is None and math.isnan(uncertainty):
                    reason = f"non-finite uncertainty at step {step}"
                if reason is not None:
                    stop_reason = reason
                    break
                if step % committee_every == 0:
                    reason = check_min_distance(work, min_distance_A, step)
                reason = reason or check_uncertainty(uncertainty, trust_hi_eV_A, step)
            reason = reason or check_temperature(
                work.get_temperature(), temperature_K, max_temperature_factor, step
            )
            if sample or reason:
                if committee is None:  # a temperature stop between full evaluations
                    committee = committee_now()
                frames.append(
                    _frame(
                        work,
                        committee,
                        step=step,
                        timestep_fs=timestep_fs,
                        stopped=reason is not None,
                    )
                )
            if sample and progress is not None:
                progress(step, steps)
            if reason is not None:
                stop_reason = reason
                break
    except ExplorationError:
        raise
    except Exception as exc:  # a calculator or integrator failure: name where it happened
        raise ExplorationError(
            f"walker failed at step {step}: {type(exc).__name__}: {exc}"
        ) from exc

    wall_s = time.perf_counter() - start_s
    if stop_reason is None:
        logger.info(
            "walker at %g K ran %d steps, %d frames, %d committee evaluations in %.1f s",
            temperature_K,
            step,
            len(frames),
            n_committee,
            wall_s,
        )
    else:
        logger.info(
            "walker at %g K stopped: %s (%d frames)", temperature_K, stop_reason, len(frames)
        )
    return WalkerResult(
        frames=frames,
        stop_reason=stop_reason,
        steps_done=step,
        wall_s=wall_s,
        committee_evaluations=n_committee,
    )


def _shifted_index(walker: int, n_fast: int, n_slow: int) -> int:
    """Round-robin index over ``n_slow`` items that, paired with ``walker % n_fast``,
    visits every (fast, slow) pair once before any pair repeats."""
    period = n_fast * n_slow // gcd(n_fast, n_slow)
    return (walker + walker // period) % n_slow


def walker_seed(base_seed: int, iteration: int, walker: int) -> int:
    """Deterministic 62-bit seed, distinct (with overwhelming probability) per
    (campaign seed, iteration, walker)."""
    state = np.random.SeedSequence([int(base_seed) & 0xFFFFFFFF, int(iteration), int(walker)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(2))


def walker_plan(
    n_walkers: int, exploration: ExplorationConfig, n_starts: int, iteration: int
) -> list[dict]:
    """What each walker of an iteration runs.

    Temperatures cycle round-robin (walker ``i`` gets
    ``temperatures_K[i % len(temperatures_K)]``). Starting structures and, for
    NPT, pressures also cycle, shifted by one after each full period so that
    every (temperature, start) and every (temperature, pressure) pair is used
    once before any repeats.

    Parameters
    ----------
    n_walkers
        Walkers to plan.
    exploration
        The campaign's exploration settings (temperatures, pressures, seed).
    n_starts
        Number of starting structures to choose from.
    iteration
        Active-learning iteration (enters the seeds).

    Returns
    -------
    list of dict
        Per walker: ``walker`` (index), ``start_index`` (also as ``start``,
        the name :mod:`alflow.steps.explore` reads), ``temperature_K``,
        ``pressure_GPa`` (0.0 for NVT) and ``seed``.

    Raises
    ------
    ExplorationError
        ``n_starts`` < 1 or ``n_walkers`` < 0.
    """
    if n_starts < 1:
        raise ExplorationError(f"walker_plan needs at least one starting structure, got {n_starts}")
    if n_walkers < 0:
        raise ExplorationError(f"n_walkers must be >= 0, got {n_walkers}")
    temperatures = list(exploration.temperatures_K)
    pressures = list(exploration.pressures_GPa) if exploration.ensemble == "npt" else [0.0]
    plan = []
    for walker in range(n_walkers):
        start_index = _shifted_index(walker, len(temperatures), n_starts)
        plan.append(
            {
                "walker": walker,
                "start_index": start_index,
                "start": start_index,
                "temperature_K": float(temperatures[walker % len(temperatures)]),
                "pressure_GPa": float(
                    pressures[_shifted_index(walker, len(temperatures), len(pressures))]
                ),
                "seed": walker_seed(exploration.seed, iteration, walker),
            }
        )
    return plan
