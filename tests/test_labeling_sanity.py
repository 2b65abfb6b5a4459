"""sanity_reason: cheap physical checks before a structure is labeled."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from alflow.config import SanityConfig
from alflow.labeling.sanity import sanity_reason

SANITY = SanityConfig(min_distance_A=1.5, max_atoms=50)


def test_fine_bulk_cell_passes() -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    assert sanity_reason(atoms, SANITY) is None


def test_fine_molecule_without_cell_passes() -> None:
    # a zero cell is fine when nothing is periodic (no volume check)
    assert sanity_reason(molecule("CH4"), SanityConfig(min_distance_A=1.0)) is None


def test_overlapping_atoms_give_distance_and_pair() -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[3] = atoms.positions[0] + [0.8, 0.0, 0.0]
    reason = sanity_reason(atoms, SANITY)
    assert reason is not None
    assert "0.800" in reason
    assert "atoms 0 (Cu) and 3 (Cu)" in reason


def test_overlap_with_a_periodic_image_is_found() -> None:
    atoms = Atoms("Al2", positions=[[0.1, 0, 0], [3.3, 0, 0]], cell=[4.0, 4.0, 4.0], pbc=True)
    reason = sanity_reason(atoms, SanityConfig(min_distance_A=1.5, min_volume_per_atom_A3=1.0))
    assert reason is not None and "0.800" in reason


@pytest.mark.parametrize("where", ["position", "cell"])
def test_non_finite_values(where: str) -> None:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    if where == "position":
        atoms.positions[2, 1] = np.nan
        assert sanity_reason(atoms, SANITY) == "non-finite position of atom 2"
    else:
        cell = np.array(atoms.cell)
        cell[0, 0] = np.inf
        atoms.cell = cell
        assert sanity_reason(atoms, SANITY) == "non-finite cell"


def test_zero_volume_cell() -> None:
    atoms = Atoms("Al", positions=[[0, 0, 0]], cell=[[4, 0, 0], [0, 4, 0], [4, 4, 0]], pbc=True)
    reason = sanity_reason(atoms, SANITY)
    assert reason is not None and reason.startswith("degenerate cell")


def test_volume_per_atom_bounds() -> None:
    dense = bulk("Cu", "fcc", a=2.5, cubic=True)  # 3.9 Å³/atom
    dilute = bulk("Cu", "fcc", a=10.0, cubic=True)  # 250 Å³/atom
    low = sanity_reason(dense, SanityConfig(min_distance_A=1.0))
    high = sanity_reason(dilute, SANITY)
    assert low is not None and "below 5" in low
    assert high is not None and "above 100" in high


def test_volume_bounds_only_for_3d_periodic_cells() -> None:
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = [True, True, False]
    slab.cell[2, 2] = 100.0  # lots of vacuum is fine for a slab
    assert sanity_reason(slab, SANITY) is None


def test_too_many_atoms() -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(4)  # 256 atoms
    assert sanity_reason(atoms, SANITY) == "too many atoms: 256 > 50"
