"""Committee disagreement metrics (pure numpy).

The force deviation follows DP-GEN's ``model_devi``: for atom *i*,
``sqrt(mean_m |F_m,i - <F_i>|^2)`` with ``<F_i>`` the committee mean, and a
frame's score is the largest value over its atoms. Population statistics
(divide by M, not M - 1) are used throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError

__all__ = [
    "MIN_MEMBERS",
    "committee_statistics",
    "energy_deviation_per_atom",
    "force_deviation_per_atom",
    "max_force_deviation",
]

#: Fewest members whose disagreement estimates an uncertainty.
MIN_MEMBERS = 2


def force_deviation_per_atom(forces_comm: np.ndarray) -> np.ndarray:
    """Per-atom force deviation of a committee (eV/Å).

    Parameters
    ----------
    forces_comm
        Forces of every member, shape (M, N, 3), eV/Å.

    Returns
    -------
    numpy.ndarray
        Shape (N,): ``sqrt(mean_m |F_m,i - <F_i>|^2)``.

    Raises
    ------
    ValueError
        The array is not (M, N, 3) with M >= 1.
    """
    forces = np.asarray(forces_comm, dtype=float)
    if forces.ndim != 3 or forces.shape[2] != 3 or forces.shape[0] < 1:
        raise ValueError(f"forces_comm must have shape (M, N, 3), got {forces.shape}")
    deviation = forces - forces.mean(axis=0, keepdims=True)
    return np.sqrt(np.mean(np.sum(deviation**2, axis=2), axis=0))


def max_force_deviation(forces_comm: np.ndarray) -> float:
    """Largest per-atom force deviation of a frame (eV/Å), DP-GEN's ``max_devi_f``.

    Parameters
    ----------
    forces_comm
        Forces of every member, shape (M, N, 3), eV/Å.

    Returns
    -------
    float
        0.0 for a frame without atoms.
    """
    per_atom = force_deviation_per_atom(forces_comm)
    return float(per_atom.max()) if per_atom.size else 0.0


def energy_deviation_per_atom(energy_comm: np.ndarray, n_atoms: int) -> float:
    """Committee standard deviation of the total energy divided by the atom count (eV/atom).

    Parameters
    ----------
    energy_comm
        Total energy of every member, shape (M,), eV.
    n_atoms
        Atoms in the frame (>= 1).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        ``n_atoms`` < 1 or an empty committee.
    """
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be at least 1, got {n_atoms}")
    energies = np.asarray(energy_comm, dtype=float).reshape(-1)
    if energies.size == 0:
        raise ValueError("energy_comm is empty")
    return float(np.std(energies) / n_atoms)


def committee_statistics(
    energy_comm: np.ndarray, forces_comm: np.ndarray, stress_comm: np.ndarray | None = None
) -> dict[str, Any]:
    """The committee result keys of every member's energy, forces and (optionally) stress.

    Parameters
    ----------
    energy_comm
        Total energy of every member, shape (M,), eV.
    forces_comm
        Forces of every member, shape (M, N, 3), eV/Å.
    stress_comm
        Voigt stress of every member, shape (M, 6), eV/Å³; None: no stress keys.

    Returns
    -------
    dict
        ``energy``/``free_energy`` (eV) and ``forces`` (N, 3) eV/Å, the
        committee means; ``energy_comm`` and ``forces_comm`` (the arrays
        given, not copied); ``energy_std`` (eV, population standard
        deviation); ``forces_std`` (N,) eV/Å (:func:`force_deviation_per_atom`)
        and ``max_force_dev`` (eV/Å, 0.0 for a frame without atoms); with
        ``stress_comm`` also ``stress`` (the mean) and ``stress_comm``.

    Raises
    ------
    ValueError
        ``forces_comm`` is not (M, N, 3) with M >= 1.
    """
    forces_std = force_deviation_per_atom(forces_comm)
    results = {
        "energy": float(energy_comm.mean()),
        "free_energy": float(energy_comm.mean()),
        "forces": forces_comm.mean(axis=0),
        "energy_comm": energy_comm,
        "forces_comm": forces_comm,
        "energy_std": float(energy_comm.std()),
        "forces_std": forces_std,
        "max_force_dev": float(forces_std.max()) if forces_std.size else 0.0,
    }
    if stress_comm is not None:
        results["stress"] = stress_comm.mean(axis=0)
        results["stress_comm"] = stress_comm
    return results


def stress_wanted(atoms: Atoms, properties: Sequence[str], always_stress: bool = False) -> bool:
    """Whether a committee calculator computes stress for this call.

    Stress is computed when asked for, or with ``always_stress`` (NPT) on a
    cell periodic in all three directions.

    Raises
    ------
    PropertyNotImplementedError
        Stress is asked for on a cell that is not periodic in all three directions.
    """
    periodic = bool(atoms.pbc.all())
    if "stress" in properties and not periodic:
        raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
    return "stress" in properties or (always_stress and periodic)
