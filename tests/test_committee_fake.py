"""FakeCommittee: EMT plus seeded member noise, with the committee's result keys."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT

from alflow.committee.uncertainty import force_deviation_per_atom
from alflow.testing import FakeCommittee


def _cu(rattle_A: float = 0.05, seed: int = 1, strain: float = 0.0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.set_cell(atoms.cell * (1 + strain), scale_atoms=True)
    atoms.rattle(rattle_A, seed=seed)
    return atoms


def _results(calc: FakeCommittee, atoms) -> dict:
    atoms = atoms.copy()
    atoms.calc = calc
    atoms.get_forces()
    return dict(atoms.calc.results)


def test_result_keys_and_shapes() -> None:
    atoms = _cu()
    atoms.calc = FakeCommittee(n_members=3, seed=0)
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    results = atoms.calc.results
    n = len(atoms)
    assert forces.shape == (n, 3)
    assert stress.shape == (6,)
    assert results["energy_comm"].shape == (3,)
    assert results["forces_comm"].shape == (3, n, 3)
    assert results["forces_std"].shape == (n,)
    assert isinstance(results["energy_std"], float)
    assert results["max_force_dev"] == pytest.approx(results["forces_std"].max())
    np.testing.assert_allclose(
        results["forces_std"], force_deviation_per_atom(results["forces_comm"])
    )
    np.testing.assert_allclose(forces, results["forces_comm"].mean(axis=0))
    assert atoms.get_potential_energy() == pytest.approx(results["energy_comm"].mean())


def test_deterministic_for_a_seed_and_independent_of_call_order() -> None:
    a, b = _cu(seed=1), _cu(seed=2)
    first = FakeCommittee(seed=7)
    r_a = _results(first, a)
    r_b = _results(first, b)
    second = FakeCommittee(seed=7)
    r_b2 = _results(second, b)
    r_a2 = _results(second, a)
    np.testing.assert_array_equal(r_a["forces_comm"], r_a2["forces_comm"])
    np.testing.assert_array_equal(r_b["forces_comm"], r_b2["forces_comm"])
    np.testing.assert_array_equal(r_a["energy_comm"], r_a2["energy_comm"])


def test_other_seed_other_noise() -> None:
    atoms = _cu()
    r0 = _results(FakeCommittee(seed=0), atoms)
    r1 = _results(FakeCommittee(seed=1), atoms)
    assert not np.allclose(r0["forces_comm"], r1["forces_comm"])


def test_members_scatter_around_emt() -> None:
    atoms = _cu()
    results = _results(FakeCommittee(n_members=64, noise_eV_A=0.05, seed=3), atoms)
    reference = atoms.copy()
    reference.calc = EMT()
    emt_forces = reference.get_forces()
    assert results["max_force_dev"] > 0
    # the mean of 64 members is within a few standard errors of EMT
    assert np.abs(results["forces"] - emt_forces).max() < 0.2


def test_noise_grows_away_from_training() -> None:
    calm = _results(FakeCommittee(seed=0), _cu(rattle_A=0.01))
    hot = _results(FakeCommittee(seed=0), _cu(rattle_A=0.2))
    assert hot["max_force_dev"] > 2 * calm["max_force_dev"]
    v0 = _cu(rattle_A=0.0).get_volume() / 32
    fake = FakeCommittee(seed=0, reference_volume_A3_per_atom=v0)
    near = _results(fake, _cu(rattle_A=0.01))
    strained = _results(fake, _cu(rattle_A=0.01, strain=0.05))
    assert strained["max_force_dev"] > 3 * near["max_force_dev"]


def test_zero_noise_is_emt() -> None:
    atoms = _cu()
    results = _results(FakeCommittee(noise_eV_A=0.0, energy_noise_eV_atom=0.0), atoms)
    reference = atoms.copy()
    reference.calc = EMT()
    np.testing.assert_allclose(results["forces"], reference.get_forces(), atol=1e-12)
    assert results["max_force_dev"] == 0.0


def test_stress_needs_3d_periodic_cell() -> None:
    atoms = _cu()
    atoms.pbc = (True, True, False)
    atoms.calc = FakeCommittee()
    atoms.get_forces()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


@pytest.mark.parametrize(
    "kwargs", [{"n_members": 1}, {"noise_eV_A": -1.0}, {"force_scale_eV_A": 0.0}]
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FakeCommittee(**kwargs)


def test_importing_committee_does_not_import_torch_or_mace() -> None:
    code = (
        "import sys, alflow.committee\n"
        "from alflow.testing import FakeCommittee\n"
        "print('torch' in sys.modules, 'mace' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
