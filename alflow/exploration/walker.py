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

The settings all walkers of a run share can also be one
:class:`~alflow.exploration.options.WalkerOptions` (``options=``); the
walkers' plan (temperatures, starts, seeds) is :mod:`alflow.exploration.plan`.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.md import MolecularDynamics

from alflow.errors import ExplorationError
from alflow.exploration.observers import (
    check_min_distance,
    check_non_finite,
    check_temperature,
    check_uncertainty,
    max_force_deviation_eV_A,
)
from alflow.exploration.options import WalkerOptions, check_walker_arguments, resolve_options
from alflow.exploration.plan import walker_plan, walker_seed  # their former home; kept importable

__all__ = ["Frame", "WalkerOptions", "WalkerResult", "run_walker", "walker_plan", "walker_seed"]

logger = logging.getLogger(__name__)


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


def _start(atoms: Atoms, calc: Calculator, temperature_K: float, seed: Any) -> Atoms:
    """A copy of ``atoms`` with ``calc`` and Maxwell–Boltzmann velocities at ``temperature_K``."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    work = atoms.copy()
    work.calc = calc
    MaxwellBoltzmannDistribution(work, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(work)
    return work


def _make_dynamics(
    atoms: Atoms,
    options: WalkerOptions,
    *,
    temperature_K: float,
    pressure_GPa: float,
    rng: np.random.Generator,
) -> MolecularDynamics:
    """The ASE integrator of ``options.ensemble`` (calls the calculator once)."""
    timestep = options.timestep_fs * units.fs
    if options.ensemble == "nvt":
        from ase.md.langevin import Langevin

        return Langevin(
            atoms,
            timestep,
            temperature_K=temperature_K,
            friction=options.friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
    from ase.md.langevinbaoab import LangevinBAOAB

    with warnings.catch_warnings():
        # The barostat mass comes from ASE's documented heuristic for P_tau.
        warnings.filterwarnings("ignore", message="Using heuristic P_mass")
        return LangevinBAOAB(
            atoms,
            timestep,
            temperature_K=temperature_K,
            externalstress=-pressure_GPa * units.GPa,  # stress = -pressure
            hydrostatic=True,
            T_tau=units.fs / options.friction_per_fs,
            P_tau=options.barostat_time_fs * units.fs,
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


@dataclass
class _Walk:
    """A running walker: its atoms, the checks at each step and the frames it kept."""

    work: Atoms
    options: WalkerOptions
    temperature_K: float
    progress: Callable[[int, int], None] | None = None
    frames: list[Frame] = field(default_factory=list)
    committee_evaluations: int = 0

    def __post_init__(self) -> None:
        self.propagating = _is_propagating(self.work.calc)

    def committee(self) -> Mapping[str, Any]:
        """The whole committee's results at the current configuration."""
        self.committee_evaluations += 1
        if self.propagating:
            return self.work.calc.evaluate_committee(self.work)  # type: ignore[union-attr]
        return self.work.calc.results  # type: ignore[union-attr]

    def observe(self, step: int) -> str | None:
        """Check step ``step``, keep its frame if due; the reason to stop, or None."""
        work, options = self.work, self.options
        work.get_forces()  # cached: the integrator computed them at these positions
        reason = check_non_finite(work, work.calc.results, step)  # type: ignore[union-attr]
        if reason is not None:
            return reason  # a non-finite state keeps no frame
        committee: Mapping[str, Any] | None = None
        if step % options.committee_every_steps == 0 or not self.propagating:
            committee = self.committee()
            reason = check_non_finite(work, committee, step)
            uncertainty = max_force_deviation_eV_A(committee)
            if reason is None and math.isnan(uncertainty):
                reason = f"non-finite uncertainty at step {step}"
            if reason is not None:
                return reason
            if step % options.committee_every_steps == 0:
                reason = check_min_distance(work, options.min_distance_A, step)
            reason = reason or check_uncertainty(uncertainty, options.trust_hi_eV_A, step)
        reason = reason or check_temperature(
            work.get_temperature(), self.temperature_K, options.max_temperature_factor, step
        )
        sample = step % options.sample_interval_steps == 0
        if sample or reason:
            if committee is None:  # a temperature stop between full evaluations
                committee = self.committee()
            self.frames.append(
                _frame(
                    work,
                    committee,
                    step=step,
                    timestep_fs=options.timestep_fs,
                    stopped=reason is not None,
                )
            )
        if sample and self.progress is not None:
            self.progress(step, options.steps)
        return reason


def run_walker(
    atoms: Atoms,
    calc: Calculator,
    *,
    temperature_K: float,
    seed: int,
    pressure_GPa: float = 0.0,
    options: WalkerOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    **option_fields: Any,
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
    seed
        Seeds the initial velocities and the Langevin noise.
    pressure_GPa
        External pressure for NPT (GPa).
    options
        The settings walkers share (steps, time step, sampling, stop limits,
        ensemble, ...).
    progress
        Called with ``(step, steps)`` at every sample step.
    **option_fields
        Fields of :class:`~alflow.exploration.options.WalkerOptions`, given
        one by one (``steps=100, timestep_fs=2, ...``) instead of
        ``options``, or replacing those of ``options``.

    Returns
    -------
    WalkerResult

    Raises
    ------
    ExplorationError
        Invalid arguments (non-periodic NPT, unknown ensemble, ...), a
        calculator that is not a committee, or a calculator failure.
    """
    options = resolve_options(options, option_fields)
    check_walker_arguments(atoms, options, temperature_K)
    start_s = time.perf_counter()
    velocity_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    walk = _Walk(
        _start(atoms, calc, temperature_K, velocity_seed), options, temperature_K, progress
    )
    stop_reason: str | None = None
    step = 0
    try:
        dyn = _make_dynamics(
            walk.work,
            options,
            temperature_K=temperature_K,
            pressure_GPa=pressure_GPa,
            rng=np.random.default_rng(noise_seed),
        )
        for _ in dyn.irun(options.steps):
            step = int(dyn.nsteps)
            stop_reason = walk.observe(step)
            if stop_reason is not None:
                break
    except ExplorationError:
        raise
    except Exception as exc:  # a calculator or integrator failure: name where it happened
        raise ExplorationError(
            f"walker failed at step {step}: {type(exc).__name__}: {exc}"
        ) from exc
    result = WalkerResult(
        frames=walk.frames,
        stop_reason=stop_reason,
        steps_done=step,
        wall_s=time.perf_counter() - start_s,
        committee_evaluations=walk.committee_evaluations,
    )
    _log_result(result, temperature_K)
    return result


def _log_result(result: WalkerResult, temperature_K: float) -> None:
    """One log line: how far the walker ran, or why it stopped."""
    if result.stop_reason is None:
        logger.info(
            "walker at %g K ran %d steps, %d frames, %d committee evaluations in %.1f s",
            temperature_K,
            result.steps_done,
            len(result.frames),
            result.committee_evaluations,
            result.wall_s,
        )
    else:
        logger.info(
            "walker at %g K stopped: %s (%d frames)",
            temperature_K,
            result.stop_reason,
            len(result.frames),
        )
