"""Physical sanity checks run before a configuration is sent to a reference code.

A DFT job on two overlapping atoms or on a collapsed cell wastes a node and
usually fails in the SCF; these checks are cheap and give a short reason.
"""

from __future__ import annotations

import logging

import numpy as np
from ase import Atoms

from alflow.config import SanityConfig
from alflow.contacts import ContactLimits

__all__ = ["sanity_reason"]

logger = logging.getLogger(__name__)

_MIN_VOLUME_A3 = 1e-6


def sanity_reason(
    atoms: Atoms, sanity: SanityConfig, limits: ContactLimits | None = None
) -> str | None:
    """Why a configuration must not be labeled, or None when it is fine.

    Checks, in order: number of atoms, finite positions and cell, a
    degenerate cell and the volume per atom (3D-periodic cells only), and
    the closest interatomic distance (periodic images included).

    Parameters
    ----------
    atoms
        The configuration.
    sanity
        Thresholds (``min_distance_A``, ``max_atoms``, volume-per-atom bounds in Å³).
    limits
        Closest allowed distance per element pair (from the training data);
        None: ``sanity.min_distance_A`` or the fallback.

    Returns
    -------
    str or None
        A short reason, e.g. ``"atoms 0 (Cu) and 3 (Cu) are 0.800 Å apart
        (< 1.5 Å)"``; None when every check passes.
    """
    n_atoms = len(atoms)
    if n_atoms == 0:
        return "no atoms"
    if n_atoms > sanity.max_atoms:
        return f"too many atoms: {n_atoms} > {sanity.max_atoms}"
    if not np.all(np.isfinite(atoms.positions)):
        bad = int(np.argwhere(~np.isfinite(atoms.positions))[0][0])
        return f"non-finite position of atom {bad}"
    cell = np.asarray(atoms.cell, dtype=float)
    if not np.all(np.isfinite(cell)):
        return "non-finite cell"
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        volume_A3 = abs(float(np.linalg.det(cell)))
        if pbc.all():
            if volume_A3 < _MIN_VOLUME_A3:
                return f"degenerate cell (volume {volume_A3:.3g} Å³)"
            per_atom_A3 = volume_A3 / n_atoms
            if per_atom_A3 < sanity.min_volume_per_atom_A3:
                return (
                    f"volume per atom {per_atom_A3:.3g} Å³ below "
                    f"{sanity.min_volume_per_atom_A3:g} Å³"
                )
            if per_atom_A3 > sanity.max_volume_per_atom_A3:
                return (
                    f"volume per atom {per_atom_A3:.3g} Å³ above "
                    f"{sanity.max_volume_per_atom_A3:g} Å³"
                )
        else:
            lengths_A = np.linalg.norm(cell, axis=1)
            if np.any(lengths_A[pbc] < _MIN_VOLUME_A3):
                return "degenerate cell (zero-length periodic cell vector)"
    limits = limits or ContactLimits.from_data(sanity, {})
    closest = limits.violation(atoms)
    if closest is not None:
        distance_A, i, j, limit_A = closest
        symbols = atoms.get_chemical_symbols()
        if i == j:
            return (
                f"atom {i} ({symbols[i]}) and its periodic image are {distance_A:.3f} Å apart "
                f"(< {limit_A:.3g} Å)"
            )
        return (
            f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {distance_A:.3f} Å apart "
            f"(< {limit_A:.3g} Å)"
        )
    return None
