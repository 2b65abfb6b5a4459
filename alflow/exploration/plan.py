"""Which walker runs what: temperatures, starts, pressures and seeds of an iteration."""

from __future__ import annotations

from math import gcd

import numpy as np

from alflow.config import ExplorationConfig
from alflow.errors import ExplorationError

__all__ = ["walker_plan", "walker_seed"]


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
