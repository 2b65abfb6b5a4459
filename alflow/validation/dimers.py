"""Dimer curves: does the committee repel at distances the data never reached?

For every element pair of the campaign, two isolated atoms in a
non-periodic box are moved from ``dimer_min_A`` to the committee's cutoff.
The energy is given relative to the atoms at the cutoff (E(r) − E(r_max)),
with the committee's spread (``energy_std``). Below the shortest distance of
that pair in the training data the committee extrapolates; a potential that
is safe to run must still rise there as the atoms approach. The reference
method is evaluated at a few distances (never below 0.6 × the sum of the
covalent radii, where DFT in a plane-wave basis is no longer meaningful).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from alflow.validation.common import ValidationRun

__all__ = ["check_dimers", "dimer_atoms", "monotonic_below", "pair_energy_curve"]

log = logging.getLogger(__name__)

#: Vacuum around the dimer on every side (Å).
VACUUM_A = 6.0
#: Grid of the monotonicity check (Å).
FINE_STEP_A = 0.01
#: Reference points are never closer than this × the sum of the covalent radii.
REFERENCE_MIN_FACTOR = 0.6


def dimer_atoms(a: str, b: str, distance_A: float, span_A: float | None = None) -> Atoms:
    """Atoms ``a`` and ``b`` ``distance_A`` apart along x in a non-periodic box.

    The box leaves ``VACUUM_A`` on every side of a pair ``max(distance_A,
    span_A)`` long, with edges differing by 0.1 Å (as
    :func:`alflow.labeling.base.isolated_atom_box`), so all the points of a
    curve share one box.
    """
    length_A = max(distance_A, span_A or 0.0) + 2.0 * VACUUM_A
    edge_A = 2.0 * VACUUM_A
    atoms = Atoms(
        [a, b],
        positions=[[0.0, 0.0, 0.0], [distance_A, 0.0, 0.0]],
        cell=[length_A, edge_A + 0.1, edge_A + 0.2],
        pbc=False,
    )
    atoms.center()
    return atoms


def pair_energy_curve(
    calc: Any, a: str, b: str, distances_A: Sequence[float] | np.ndarray
) -> dict[str, np.ndarray]:
    """Energy of an isolated ``a``–``b`` dimer at each distance, with the committee's spread.

    Parameters
    ----------
    calc
        An ASE calculator; a committee's ``energy_std`` is reported (NaN otherwise).
    a, b
        Chemical symbols.
    distances_A
        Distances (Å).

    Returns
    -------
    dict
        ``distance_A``, ``energy_eV`` (total, the calculator's zero) and
        ``energy_std_eV`` arrays.
    """
    distances = np.asarray(distances_A, dtype=float)
    span_A = float(distances.max()) if len(distances) else None
    energies, spreads = [], []
    for r in distances:
        atoms = dimer_atoms(a, b, float(r), span_A)
        atoms.calc = calc
        energies.append(float(atoms.get_potential_energy()))
        spreads.append(float(calc.results.get("energy_std", np.nan)))
    return {
        "distance_A": distances,
        "energy_eV": np.asarray(energies),
        "energy_std_eV": np.asarray(spreads),
    }


def monotonic_below(
    calc: Any, a: str, b: str, upper_A: float, lower_A: float
) -> tuple[bool, list[float]]:
    """Does the energy rise strictly as r goes from ``upper_A`` down to ``lower_A``?

    Checked on a grid of ``FINE_STEP_A``; returns the verdict and the span
    ``[lowest, highest]`` (Å) of the grid points from which the energy does
    not rise towards the next shorter distance (empty when monotonic).
    """
    grid = np.arange(lower_A, upper_A, FINE_STEP_A)
    grid = np.append(grid, upper_A) if len(grid) == 0 or grid[-1] < upper_A else grid
    if len(grid) < 2:
        return True, []
    energy = pair_energy_curve(calc, a, b, grid)["energy_eV"]
    bad = np.flatnonzero(np.diff(energy) >= 0.0)  # E must fall as r grows
    if not len(bad):
        return True, []
    return False, [round(float(grid[bad[0] + 1]), 4), round(float(grid[bad[-1] + 1]), 4)]


def _reference(run: ValidationRun, a: str, b: str, r_max_A: float) -> dict[str, Any] | None:
    """Reference-method points of one pair, relative to the atoms at the cutoff."""
    n = run.config.dimer_reference_points
    if n <= 0:
        return None
    radii_A = covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]]
    lowest_A = max(run.config.dimer_min_A, REFERENCE_MIN_FACTOR * float(radii_A))
    distances = np.linspace(lowest_A, r_max_A, max(n, 2))
    energies = []
    for r in distances:
        label = run.references.label(
            dimer_atoms(a, b, float(r), r_max_A),
            check="dimers",
            name=f"{a}{b}-{r:.3f}",
            origin={"pair": f"{a}-{b}", "distance_A": float(r)},
        )
        energies.append(np.nan if label is None else float(label["energy_eV"]))
    reference = np.asarray(energies) - energies[-1]
    committee = pair_energy_curve(run.calc, a, b, distances)["energy_eV"]
    committee = committee - committee[-1]
    error = committee - reference
    finite = np.isfinite(error)
    return {
        "distance_A": distances,
        "energy_eV": reference,
        "committee_energy_eV": committee,
        "error_eV": error,
        "mae_eV": float(np.mean(np.abs(error[finite]))) if finite.any() else None,
        "failed": int(np.count_nonzero(~np.isfinite(energies))),
    }


def _one_pair(run: ValidationRun, a: str, b: str) -> dict[str, Any]:
    """Curve, monotonicity below the data and reference points of one pair."""
    config, r_max_A = run.config, run.r_max_A
    grid = np.linspace(config.dimer_min_A, r_max_A, config.dimer_points)
    curve = pair_energy_curve(run.calc, a, b, grid)
    shortest_A = run.shortest_training_distances_A().get((a, b))
    if shortest_A is None:
        monotonic, violations = None, []
        note = f"no {a}-{b} pair within {r_max_A:g} Å in the training data"
    else:
        monotonic, violations = monotonic_below(run.calc, a, b, shortest_A, config.dimer_min_A)
        note = None
    result = {
        "pair": f"{a}-{b}",
        "elements": [a, b],
        "r_max_A": r_max_A,
        "distance_A": grid,
        "energy_eV": curve["energy_eV"] - curve["energy_eV"][-1],
        "energy_std_eV": curve["energy_std_eV"],
        "shortest_training_distance_A": shortest_A,
        "monotonic_below_data": monotonic,
        "not_rising_between_A": violations,
        "note": note,
        "reference": _reference(run, a, b, r_max_A),
    }
    log.info(
        "dimer %s-%s: shortest training distance %s Å, monotonic below it: %s",
        a,
        b,
        "n/a" if shortest_A is None else f"{shortest_A:.3f}",
        monotonic,
    )
    return result


def element_pairs(run: ValidationRun) -> list[tuple[str, str]]:
    """Every element pair of the initial structures, alphabetically."""
    elements = sorted({s for item in run.structures for s in item.atoms.get_chemical_symbols()})
    return list(itertools.combinations_with_replacement(elements, 2))


def check_dimers(run: ValidationRun) -> dict[str, Any]:
    """Dimer curves of every element pair.

    Returns
    -------
    dict
        ``pairs``: one dict per pair (see :func:`_one_pair`), ``dimer_min_A``.
    """
    return {
        "dimer_min_A": run.config.dimer_min_A,
        "pairs": [_one_pair(run, a, b) for a, b in element_pairs(run)],
    }
