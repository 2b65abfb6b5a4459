"""Tests of alflow.exploration: walkers with observers, and walker plans.

A local fake committee (EMT forces plus seeded per-member Gaussian noise whose
scale grows with the EMT force on each atom, i.e. with temperature and
compression) stands in for the MACE committee, so no torch is needed.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from alflow.committee.uncertainty import committee_statistics
from alflow.config import ExplorationConfig
from alflow.errors import ExplorationError
from alflow.exploration import run_walker, walker_plan
from alflow.exploration.observers import (
    check_temperature,
    check_uncertainty,
    max_force_deviation_eV_A,
)


class FakeCommittee(Calculator):
    """EMT plus per-member noise ``base + relative × |F_EMT,i|`` on each atom's force.

    Parameters
    ----------
    members
        Committee size M.
    noise_eV_A
        Noise independent of the configuration (eV/Å).
    relative_noise
        Noise per eV/Å of EMT force; grows with temperature and compression.
    nan_after_calls
        Return NaN forces from this call on.
    seed
        Seeds the noise.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(
        self,
        members: int = 4,
        noise_eV_A: float = 0.005,
        relative_noise: float = 0.05,
        nan_after_calls: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.members = members
        self.noise_eV_A = noise_eV_A
        self.relative_noise = relative_noise
        self.nan_after_calls = nan_after_calls
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        reference = self.atoms.copy()
        reference.calc = EMT()
        energy = reference.get_potential_energy()
        forces = reference.get_forces()
        n_atoms = len(reference)
        scale = self.noise_eV_A + self.relative_noise * np.linalg.norm(forces, axis=1)
        forces_comm = (
            forces[None] + self.rng.normal(size=(self.members, n_atoms, 3)) * scale[None, :, None]
        )
        energy_comm = energy + self.rng.normal(size=self.members) * 0.01 * np.sqrt(n_atoms)
        self.calls += 1
        if self.nan_after_calls is not None and self.calls > self.nan_after_calls:
            forces_comm[:] = np.nan
        self.results = committee_statistics(energy_comm, forces_comm)
        if reference.pbc.all():
            self.results["stress"] = reference.get_stress()


def copper(repeat: int = 2) -> Atoms:
    """32-atom fcc Cu (cubic cell repeated)."""
    return bulk("Cu", "fcc", a=3.6, cubic=True).repeat((repeat, repeat, repeat))


WALKER = {
    "temperature_K": 300.0,
    "timestep_fs": 2.0,
    "sample_interval_steps": 10,
    "trust_hi_eV_A": 0.5,
    "min_distance_A": 1.5,
    "max_temperature_factor": 3.0,
}


def test_nvt_walker_samples_frames_and_keeps_temperature():
    atoms = copper()
    before = atoms.positions.copy()
    calls = []
    result = run_walker(
        atoms,
        FakeCommittee(),
        steps=200,
        seed=1,
        friction_per_fs=0.05,
        progress=lambda step, steps: calls.append((step, steps)),
        **WALKER,
    )
    assert result.stop_reason is None
    assert result.steps_done == 200
    assert [f.step for f in result.frames] == list(range(0, 201, 10))
    assert calls == [(s, 200) for s in range(0, 201, 10)]
    assert np.allclose(atoms.positions, before)  # the input is not modified
    frame = result.frames[-1]
    assert frame.atoms.calc is None
    assert frame.time_fs == pytest.approx(400.0)
    assert frame.forces_eV_A.shape == (32, 3)
    assert not any(f.stopped for f in result.frames)
    assert all(0 < f.max_force_dev_eV_A < 0.5 for f in result.frames)
    assert all(np.isfinite(f.energy_std_eV) for f in result.frames)
    # a perfect lattice loses half its kinetic energy at first: judge the second half
    late = [f.temperature_K for f in result.frames if f.step >= 100]
    assert 150.0 < np.mean(late) < 450.0
    assert result.wall_s > 0


def test_walker_is_reproducible_with_its_seed():
    kwargs = {**WALKER, "steps": 20, "seed": 7}
    first = run_walker(copper(), FakeCommittee(seed=3), **kwargs)
    second = run_walker(copper(), FakeCommittee(seed=3), **kwargs)
    other = run_walker(copper(), FakeCommittee(seed=3), **{**kwargs, "seed": 8})
    assert np.allclose(first.frames[-1].atoms.positions, second.frames[-1].atoms.positions)
    assert not np.allclose(first.frames[-1].atoms.positions, other.frames[-1].atoms.positions)


def test_high_uncertainty_stops_walker_and_keeps_the_crossing_frame():
    result = run_walker(
        copper(),
        FakeCommittee(relative_noise=0.15),  # noise grows with the thermal forces
        steps=200,
        seed=2,
        **WALKER,
    )
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("uncertainty")
    assert f"at step {result.steps_done}" in result.stop_reason
    assert 0 < result.steps_done < 200
    last = result.frames[-1]
    assert last.stopped
    assert last.step == result.steps_done
    assert last.max_force_dev_eV_A >= 0.5
    earlier = result.frames[:-1]
    assert len(earlier) >= 2
    assert all(f.step % 10 == 0 and not f.stopped for f in earlier)
    assert all(f.max_force_dev_eV_A < 0.5 for f in earlier)
    assert all(f.step <= result.steps_done for f in result.frames)


def test_overlapping_atoms_stop_walker():
    atoms = copper()
    atoms.positions[1] = atoms.positions[0] + [0.5, 0.0, 0.0]
    result = run_walker(
        atoms, FakeCommittee(), steps=50, seed=0, **{**WALKER, "trust_hi_eV_A": np.inf}
    )
    assert result.stop_reason == "atoms 0 (Cu) and 1 (Cu) 0.50 Å apart (min 1.5) at step 0"
    assert result.steps_done == 0
    assert len(result.frames) == 1 and result.frames[0].stopped


def test_nan_forces_stop_walker_without_a_frame():
    result = run_walker(copper(), FakeCommittee(nan_after_calls=15), steps=50, seed=0, **WALKER)
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("non-finite forces at step")
    assert result.steps_done < 50
    assert all(f.step < result.steps_done for f in result.frames)
    assert all(np.isfinite(f.forces_eV_A).all() for f in result.frames)
    assert not any(f.stopped for f in result.frames)


def test_temperature_runaway_stops_walker():
    atoms = copper()
    atoms.rattle(0.25, seed=0)  # potential energy that turns into heat
    result = run_walker(
        atoms,
        FakeCommittee(),
        steps=100,
        seed=0,
        **{**WALKER, "trust_hi_eV_A": np.inf, "max_temperature_factor": 1.2},
    )
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("temperature")
    assert result.frames[-1].stopped
    assert result.frames[-1].temperature_K > 1.2 * 300.0


def test_npt_walker_changes_volume():
    atoms = copper()
    result = run_walker(
        atoms,
        FakeCommittee(),
        steps=100,
        seed=0,
        ensemble="npt",
        pressure_GPa=20.0,
        barostat_time_fs=100.0,
        **WALKER,
    )
    assert result.stop_reason is None
    volumes = [f.atoms.get_volume() for f in result.frames]
    assert volumes[0] == pytest.approx(atoms.get_volume())
    assert volumes[-1] < 0.99 * volumes[0]  # compressed by 20 GPa
    cell = result.frames[-1].atoms.cell
    assert np.allclose(cell / cell[0, 0], np.eye(3), atol=1e-8)  # isotropic


def test_npt_needs_a_periodic_cell():
    cluster = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(ExplorationError, match="3D-periodic"):
        run_walker(cluster, FakeCommittee(), steps=5, seed=0, ensemble="npt", **WALKER)


def test_invalid_arguments_and_plain_calculator_raise():
    with pytest.raises(ExplorationError, match="ensemble"):
        run_walker(copper(1), FakeCommittee(), steps=5, seed=0, ensemble="nve", **WALKER)
    with pytest.raises(ExplorationError, match="temperature_K"):
        run_walker(copper(1), FakeCommittee(), steps=5, seed=0, **{**WALKER, "temperature_K": 0})
    with pytest.raises(ExplorationError, match="committee"):
        run_walker(copper(1), EMT(), steps=5, seed=0, **WALKER)


def test_observer_checks():
    assert check_uncertainty(0.2, 0.5, 3) is None
    assert check_uncertainty(0.5, 0.5, 3) == "uncertainty 0.5 eV/Å >= trust_hi 0.5 at step 3"
    assert check_temperature(2100.0, 300.0, 3.0, 9) == "temperature 2100 K > 3 × 300 K at step 9"
    assert check_temperature(800.0, 300.0, 3.0, 9) is None
    forces_comm = np.zeros((2, 3, 3))
    forces_comm[0, 1, 0], forces_comm[1, 1, 0] = 1.0, -1.0
    assert max_force_deviation_eV_A({"forces_comm": forces_comm}) == pytest.approx(1.0)


def test_walker_plan_round_robin_and_seeds():
    exploration = ExplorationConfig(walkers=6, temperatures_K=[300.0, 600.0, 900.0], seed=5)
    plan = walker_plan(6, exploration, n_starts=2, iteration=0)
    assert [p["walker"] for p in plan] == list(range(6))
    assert [p["temperature_K"] for p in plan] == [300.0, 600.0, 900.0] * 2
    assert {(p["temperature_K"], p["start_index"]) for p in plan} == set(
        itertools.product([300.0, 600.0, 900.0], [0, 1])
    )
    assert [p["start_index"] for p in plan[:2]] == [0, 1]
    assert all(p["start"] == p["start_index"] for p in plan)
    assert all(p["pressure_GPa"] == 0.0 for p in plan)
    seeds = [p["seed"] for p in plan]
    later = [p["seed"] for p in walker_plan(6, exploration, n_starts=2, iteration=1)]
    assert len(set(seeds + later)) == 12
    assert seeds == [p["seed"] for p in walker_plan(6, exploration, n_starts=2, iteration=0)]
    assert all(0 <= s < 2**63 for s in seeds)


def test_walker_plan_npt_pressures_and_bad_starts():
    exploration = ExplorationConfig(
        temperatures_K=[300.0, 600.0], ensemble="npt", pressures_GPa=[0.0, 5.0]
    )
    plan = walker_plan(4, exploration, n_starts=1, iteration=3)
    assert {(p["temperature_K"], p["pressure_GPa"]) for p in plan} == set(
        itertools.product([300.0, 600.0], [0.0, 5.0])
    )
    assert all(p["start_index"] == 0 for p in plan)
    with pytest.raises(ExplorationError):
        walker_plan(2, exploration, n_starts=0, iteration=0)
