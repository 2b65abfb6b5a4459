"""Checks that stop a walker: each returns a human-readable reason or None.

Every check is a small pure function over the current state of the dynamics,
so :func:`~alflow.exploration.walker.run_walker` can call them inside its
``for _ in dyn.irun(steps): ... if reason: break`` loop (the mlipx pattern),
and tests can call them directly.

Reasons read like ``"uncertainty 0.83 eV/Å >= trust_hi 0.5 at step 120"`` and
are stored as the walker's ``stop_reason``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from ase import Atoms

from alflow.contacts import ContactLimits
from alflow.errors import ExplorationError

__all__ = [
    "check_min_distance",
    "check_non_finite",
    "check_temperature",
    "check_uncertainty",
    "max_force_deviation_eV_A",
]

logger = logging.getLogger(__name__)


def max_force_deviation_eV_A(results: Mapping[str, Any]) -> float:
    """The committee's force uncertainty from a calculator's results.

    Parameters
    ----------
    results
        ``calc.results`` of a committee calculator. ``"max_force_dev"`` (eV/Å)
        is used when present; otherwise it is computed from ``"forces_comm"``
        (M, N, 3) as the DP-GEN metric
        ``max_i sqrt(mean_m |F_mi - <F_i>|^2)``.

    Returns
    -------
    float
        Largest per-atom force deviation (eV/Å); NaN if the forces are not finite.

    Raises
    ------
    ExplorationError
        The results carry neither quantity: the calculator is not a committee.
    """
    if "max_force_dev" in results:
        return float(np.asarray(results["max_force_dev"], dtype=float))
    if "forces_comm" in results:
        forces_comm = np.asarray(results["forces_comm"], dtype=float)
        if forces_comm.ndim != 3 or forces_comm.shape[1] == 0:
            raise ExplorationError(
                f"forces_comm must have shape (M, N, 3), got {forces_comm.shape}"
            )
        deviation = forces_comm - forces_comm.mean(axis=0)
        per_atom = np.sqrt(np.mean(np.sum(deviation**2, axis=-1), axis=0))
        return float(per_atom.max())
    raise ExplorationError(
        "the calculator reports neither 'max_force_dev' nor 'forces_comm': "
        "walkers need a committee calculator"
    )


def check_non_finite(atoms: Atoms, results: Mapping[str, Any], step: int) -> str | None:
    """Stop on NaN or infinity in positions, energy or forces.

    Parameters
    ----------
    atoms
        The walker's atoms.
    results
        The calculator's results for the current positions.
    step
        Current MD step (for the message).

    Returns
    -------
    str or None
        The reason to stop, or None.
    """
    if not np.all(np.isfinite(atoms.positions)):
        return f"non-finite positions at step {step}"
    if not np.all(np.isfinite(np.asarray(atoms.cell))):
        return f"non-finite cell at step {step}"
    forces = results.get("forces")
    if forces is not None and not np.all(np.isfinite(forces)):
        return f"non-finite forces at step {step}"
    energy = results.get("energy")
    if energy is not None and not np.all(np.isfinite(energy)):
        return f"non-finite energy at step {step}"
    return None


def check_uncertainty(max_force_dev_eV_A: float, trust_hi_eV_A: float, step: int) -> str | None:
    """Stop when the committee disagrees beyond the trust window.

    Parameters
    ----------
    max_force_dev_eV_A
        Largest per-atom force deviation of the committee (eV/Å).
    trust_hi_eV_A
        Upper edge of the trust window (eV/Å); frames at or above it are failed.
    step
        Current MD step.

    Returns
    -------
    str or None
        The reason to stop, or None. NaN uncertainty stops the walker.
    """
    if math.isnan(max_force_dev_eV_A):
        return f"non-finite uncertainty at step {step}"
    if max_force_dev_eV_A >= trust_hi_eV_A:
        return (
            f"uncertainty {max_force_dev_eV_A:.3g} eV/Å >= trust_hi {trust_hi_eV_A:g} "
            f"at step {step}"
        )
    return None


def check_min_distance(atoms: Atoms, limits: ContactLimits | float, step: int) -> str | None:
    """Stop when two atoms come closer than their pair's limit (Å).

    Parameters
    ----------
    atoms
        The walker's atoms.
    limits
        Closest allowed distance per element pair, or one distance (Å; 0
        disables the check).
    step
        Current MD step.

    Returns
    -------
    str or None
        The reason to stop, or None.
    """
    if not isinstance(limits, ContactLimits):
        if limits <= 0:
            return None
        limits = ContactLimits(float(limits))
    closest = limits.violation(atoms)
    if closest is None:
        return None
    distance_A, i, j, limit_A = closest
    symbols = atoms.get_chemical_symbols()
    return (
        f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) {distance_A:.2f} Å apart "
        f"(min {limit_A:.3g}) at step {step}"
    )


def check_temperature(
    temperature_K: float, target_K: float, max_factor: float, step: int
) -> str | None:
    """Stop when the kinetic temperature runs away from the thermostat's target.

    Parameters
    ----------
    temperature_K
        Instantaneous kinetic temperature (K).
    target_K
        Thermostat target (K).
    max_factor
        Stop above ``max_factor × target_K``.
    step
        Current MD step.

    Returns
    -------
    str or None
        The reason to stop, or None.
    """
    if not math.isfinite(temperature_K):
        return f"non-finite temperature at step {step}"
    if temperature_K > max_factor * target_K:
        return f"temperature {temperature_K:.0f} K > {max_factor:g} × {target_K:g} K at step {step}"
    return None
