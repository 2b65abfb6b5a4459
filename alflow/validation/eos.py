"""E(V): equilibrium volume, lattice constant and bulk modulus against the reference.

Each 3D-periodic initial structure is scaled uniformly over ± the largest
linear strain; the committee's energies at ``eos_points`` volumes and the
reference method's at ``eos_reference_points`` are fitted with the same
Birch–Murnaghan equation of state (:class:`ase.eos.EquationOfState`). A
uniform scan scales every length by (V0/V)^(1/3), so the lattice constant at
the minimum is a0 = a × (V0/V)^(1/3); for a cubic cell a is the conventional
lattice constant, for any other cell the length of its first cell vector.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms, units

from alflow.validation.common import InitialStructure, ValidationRun

__all__ = ["check_eos", "fit_birch_murnaghan", "scaled"]

log = logging.getLogger(__name__)

#: The fewest volumes a Birch–Murnaghan fit is given.
MIN_FIT_POINTS = 5


def scaled(atoms: Atoms, strain: float) -> Atoms:
    """A copy of ``atoms`` with the cell and positions scaled by ``1 + strain``."""
    copy = atoms.copy()
    copy.calc = None
    copy.set_cell(np.asarray(atoms.cell) * (1.0 + strain), scale_atoms=True)
    return copy


def fit_birch_murnaghan(
    volumes_A3: Sequence[float], energies_eV: Sequence[float]
) -> dict[str, Any]:
    """Birch–Murnaghan fit of E(V) with :class:`ase.eos.EquationOfState`.

    Returns
    -------
    dict
        ``v0_A3``, ``e0_eV``, ``b_GPa`` and ``v0_inside_scan``; or ``error``
        when the fit fails (too few finite points, no minimum).
    """
    from ase.eos import EquationOfState

    volumes = np.asarray(volumes_A3, dtype=float)
    energies = np.asarray(energies_eV, dtype=float)
    finite = np.isfinite(energies)
    if finite.sum() < MIN_FIT_POINTS:
        return {"error": f"{int(finite.sum())} finite energies, {MIN_FIT_POINTS} needed"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's covariance warning on exact fits
            v0, e0, b = EquationOfState(
                volumes[finite], energies[finite], eos="birchmurnaghan"
            ).fit()
    except (RuntimeError, ValueError) as exc:
        return {"error": f"Birch–Murnaghan fit failed: {exc}"}
    if not (np.isreal(v0) and np.isfinite(v0) and float(np.real(v0)) > 0):
        return {"error": f"E(V) has no minimum the fit can find (V0 = {v0})"}
    v0, e0, b = float(np.real(v0)), float(np.real(e0)), float(np.real(b))
    inside = bool(volumes[finite].min() <= v0 <= volumes[finite].max())
    return {
        "v0_A3": float(v0),
        "e0_eV": float(e0),
        "b_GPa": float(b / units.GPa),
        "v0_inside_scan": inside,
    }


def _scan(run: ValidationRun, item: InitialStructure, n_points: int, reference: bool) -> dict:
    """Energies over the strain range (committee or reference) and their fit."""
    strain_max = run.config.eos_strain_max
    strains = np.linspace(-strain_max, strain_max, n_points)
    volumes, energies, spreads = [], [], []
    for strain in strains:
        atoms = scaled(item.atoms, float(strain))
        volumes.append(float(atoms.get_volume()))
        if reference:
            label = run.references.label(
                atoms,
                check="eos",
                name=f"s{item.index}-{strain:+.4f}",
                origin={"structure": item.index, "strain": float(strain)},
            )
            energies.append(np.nan if label is None else float(label["energy_eV"]))
            continue
        atoms.calc = run.calc
        energies.append(float(atoms.get_potential_energy()))
        spreads.append(float(run.calc.results.get("energy_std", np.nan)))
    scan: dict[str, Any] = {
        "strain": strains,
        "volume_A3": np.asarray(volumes),
        "energy_eV": np.asarray(energies),
    }
    if not reference:
        scan["energy_std_eV"] = np.asarray(spreads)
    scan.update(fit_birch_murnaghan(volumes, energies))
    return scan


def _lattice(fit: dict[str, Any], length_A: float, volume_A3: float) -> float | None:
    """a0 from a fit: the reference length scaled by (V0/V)^(1/3)."""
    if "v0_A3" not in fit:
        return None
    return float(length_A * (fit["v0_A3"] / volume_A3) ** (1.0 / 3.0))


def _one_structure(run: ValidationRun, item: InitialStructure) -> dict[str, Any]:
    """Committee and reference E(V) of one structure and their differences."""
    atoms = item.atoms
    cubic_A = item.cubic_lattice_constant_A
    length_A = cubic_A if cubic_A is not None else float(atoms.cell.lengths()[0])
    volume_A3 = float(atoms.get_volume())
    committee = _scan(run, item, run.config.eos_points, reference=False)
    committee["a0_A"] = _lattice(committee, length_A, volume_A3)
    result: dict[str, Any] = {
        "structure": item.index,
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "a_kind": "cubic lattice constant"
        if cubic_A is not None
        else "length of the first cell vector (not a cubic cell)",
        "a_initial_A": length_A,
        "v_initial_A3": volume_A3,
        "committee": committee,
        "reference": None,
    }
    n_reference = run.config.eos_reference_points
    if n_reference > 0:
        reference = _scan(run, item, max(n_reference, MIN_FIT_POINTS), reference=True)
        reference["a0_A"] = _lattice(reference, length_A, volume_A3)
        result["reference"] = reference
        result.update(_differences(committee, reference, len(atoms), run.config))
    log.info(
        "E(V) of %s: a0 committee %s Å, reference %s Å",
        result["formula"],
        _fmt(committee.get("a0_A")),
        _fmt((result["reference"] or {}).get("a0_A")),
    )
    return result


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _differences(
    committee: dict[str, Any], reference: dict[str, Any], n_atoms: int, config: Any
) -> dict[str, Any]:
    """Committee minus reference: a0, V0, B, E0 per atom; a0 within the tolerance."""
    if committee.get("a0_A") is None or reference.get("a0_A") is None:
        return {"a0_error_A": None, "a0_ok": None}
    a0_error = committee["a0_A"] - reference["a0_A"]
    return {
        "a0_error_A": float(a0_error),
        "a0_ok": bool(abs(a0_error) <= config.eos_a0_tolerance_A),
        "a0_tolerance_A": config.eos_a0_tolerance_A,
        "v0_error_percent": float(100.0 * (committee["v0_A3"] / reference["v0_A3"] - 1.0)),
        "b_error_GPa": float(committee["b_GPa"] - reference["b_GPa"]),
        "e0_error_meV_atom": float(1000.0 * (committee["e0_eV"] - reference["e0_eV"]) / n_atoms),
    }


def check_eos(run: ValidationRun) -> dict[str, Any]:
    """E(V) of every 3D-periodic initial structure.

    Returns
    -------
    dict
        ``structures``: one dict per bulk structure; ``strain_max``.
    """
    bulk = [item for item in run.structures if item.atoms.pbc.all()]
    return {
        "strain_max": run.config.eos_strain_max,
        "structures": [_one_structure(run, item) for item in bulk],
    }
