"""Committee disagreement metrics on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from alflow.committee.uncertainty import (
    committee_statistics,
    energy_deviation_per_atom,
    force_deviation_per_atom,
    max_force_deviation,
)


def test_identical_members_have_zero_deviation() -> None:
    forces = np.tile(np.arange(12.0).reshape(1, 4, 3), (3, 1, 1))
    np.testing.assert_allclose(force_deviation_per_atom(forces), np.zeros(4))
    assert max_force_deviation(forces) == 0.0


def test_two_members_opposite_offsets() -> None:
    # Members differ by ±d along x on atom 1 only: deviation of atom 1 is d.
    d = 0.3
    forces = np.zeros((2, 3, 3))
    forces[0, 1, 0] = d
    forces[1, 1, 0] = -d
    np.testing.assert_allclose(force_deviation_per_atom(forces), [0.0, d, 0.0])
    assert max_force_deviation(forces) == pytest.approx(d)


def test_deviation_is_dpgen_definition() -> None:
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(4, 5, 3))
    mean = forces.mean(axis=0)
    expected = np.sqrt(np.mean(np.sum((forces - mean) ** 2, axis=-1), axis=0))
    np.testing.assert_allclose(force_deviation_per_atom(forces), expected)
    assert max_force_deviation(forces) == pytest.approx(expected.max())


def test_deviation_is_translation_invariant_and_scales_linearly() -> None:
    rng = np.random.default_rng(1)
    forces = rng.normal(size=(3, 6, 3))
    base = force_deviation_per_atom(forces)
    np.testing.assert_allclose(force_deviation_per_atom(forces + 5.0), base)
    np.testing.assert_allclose(force_deviation_per_atom(2.0 * forces), 2.0 * base)


def test_three_component_deviation() -> None:
    # Two members differ by the vector (1, 2, 2) (length 3): deviation = 3 / 2.
    forces = np.zeros((2, 1, 3))
    forces[1, 0] = [1.0, 2.0, 2.0]
    assert max_force_deviation(forces) == pytest.approx(1.5)


def test_energy_deviation_per_atom() -> None:
    energies = np.array([-10.0, -10.2, -9.8, -10.0])
    expected = np.std(energies) / 4
    assert energy_deviation_per_atom(energies, 4) == pytest.approx(expected)
    assert energy_deviation_per_atom(np.array([1.0, 1.0]), 8) == 0.0


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2), (0, 3, 3)])
def test_bad_force_shapes_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        force_deviation_per_atom(np.zeros(shape))


def test_bad_energy_arguments_raise() -> None:
    with pytest.raises(ValueError):
        energy_deviation_per_atom(np.array([1.0, 2.0]), 0)
    with pytest.raises(ValueError):
        energy_deviation_per_atom(np.array([]), 2)


def test_no_atoms_gives_zero() -> None:
    assert max_force_deviation(np.zeros((3, 0, 3))) == 0.0


def test_committee_statistics_keys_and_values() -> None:
    rng = np.random.default_rng(2)
    energies = np.array([-10.0, -10.2, -9.8, -10.4])
    forces = rng.normal(size=(4, 5, 3))
    results = committee_statistics(energies, forces)
    assert results["energy"] == results["free_energy"] == pytest.approx(-10.1)
    np.testing.assert_allclose(results["forces"], forces.mean(axis=0))
    assert results["energy_comm"] is energies
    assert results["forces_comm"] is forces
    assert results["energy_std"] == pytest.approx(np.std(energies))
    np.testing.assert_allclose(results["forces_std"], force_deviation_per_atom(forces))
    assert results["max_force_dev"] == max_force_deviation(forces)


def test_committee_statistics_without_atoms() -> None:
    results = committee_statistics(np.array([1.0, 3.0]), np.zeros((2, 0, 3)))
    assert results["forces"].shape == (0, 3)
    assert results["forces_std"].shape == (0,)
    assert results["max_force_dev"] == 0.0
