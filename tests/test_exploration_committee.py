"""Cheap uncertainty-aware MD: one member propagates, the full committee runs at an interval.

Uses alflow's torch-free :class:`~alflow.testing.FakeCommittee` (EMT plus
seeded, configuration-keyed member noise), so member forces and committee
results are reproducible whatever the call order.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from pydantic import ValidationError

from alflow.config import ExplorationConfig
from alflow.errors import ExplorationError
from alflow.exploration import run_walker
from alflow.testing import FakeCommittee

WALKER = {
    "temperature_K": 600.0,
    "timestep_fs": 2.0,
    "min_distance_A": 1.5,
    "max_temperature_factor": 3.0,
    "seed": 3,
}


def copper() -> Atoms:
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))


def fake(propagator: int | None = 0) -> FakeCommittee:
    return FakeCommittee(3, noise_eV_A=0.02, seed=1, propagator=propagator)


def test_member_mode_returns_member_forces_and_committee_on_demand() -> None:
    atoms = copper()
    atoms.rattle(0.05, seed=0)
    atoms.calc = fake(None)
    atoms.get_forces()
    reference = dict(atoms.calc.results)
    member = fake(1)
    probe = atoms.copy()
    probe.calc = member
    np.testing.assert_allclose(probe.get_forces(), reference["forces_comm"][1])
    assert "max_force_dev" not in member.results
    committee = member.evaluate_committee(probe)
    np.testing.assert_allclose(committee["forces"], reference["forces"])
    assert committee["max_force_dev"] == pytest.approx(reference["max_force_dev"])
    np.testing.assert_allclose(probe.get_forces(), reference["forces_comm"][1])  # unchanged
    assert member.committee_evaluations == 1


def test_frames_only_at_full_evaluations_with_committee_results() -> None:
    calc = fake(0)
    result = run_walker(
        copper(), calc, steps=60, sample_interval_steps=10, trust_hi_eV_A=np.inf, **WALKER
    )
    assert result.stop_reason is None
    assert [f.step for f in result.frames] == list(range(0, 61, 10))
    assert result.committee_evaluations == 7 == calc.committee_evaluations
    for frame in result.frames:
        check = frame.atoms.copy()
        check.calc = fake(None)
        check.get_forces()
        np.testing.assert_allclose(frame.forces_eV_A, check.calc.results["forces"])
        assert frame.max_force_dev_eV_A == pytest.approx(check.calc.results["max_force_dev"])
        assert frame.energy_std_eV == pytest.approx(check.calc.results["energy_std"])


def test_committee_interval_finer_than_sampling() -> None:
    calc = fake(0)
    result = run_walker(
        copper(),
        calc,
        steps=40,
        sample_interval_steps=10,
        committee_interval_steps=5,
        trust_hi_eV_A=np.inf,
        **WALKER,
    )
    assert [f.step for f in result.frames] == [0, 10, 20, 30, 40]
    assert result.committee_evaluations == 9


def _per_step_uncertainty(steps: int) -> list[float]:
    """Committee uncertainty at every step of the member-0 trajectory (no stop)."""
    result = run_walker(
        copper(),
        fake(0),
        steps=steps,
        sample_interval_steps=1,
        committee_interval_steps=1,
        trust_hi_eV_A=np.inf,
        **WALKER,
    )
    assert [f.step for f in result.frames] == list(range(steps + 1))
    return [f.max_force_dev_eV_A for f in result.frames]


def test_resolution_guarantee_stop_at_first_sampled_crossing() -> None:
    """The walker sees every crossing at a sampled step, stops at the first, keeps nothing later.

    The trajectory is member 0's whatever the interval, so the every-step run
    is the ground truth for the interval-10 run.
    """
    steps, k = 200, 10
    uncertainty = np.array(_per_step_uncertainty(steps))
    sampled = uncertainty[::k]
    trust_hi = float(np.sort(sampled)[-3])  # crossed at a few sampled steps
    expected_stop = int(np.flatnonzero(sampled >= trust_hi)[0] * k)
    assert 0 < expected_stop < steps
    # between full evaluations the uncertainty may cross unseen: that is the stated resolution
    result = run_walker(
        copper(), fake(0), steps=steps, sample_interval_steps=k, trust_hi_eV_A=trust_hi, **WALKER
    )
    assert result.stop_reason is not None and result.stop_reason.startswith("uncertainty")
    assert result.steps_done == expected_stop
    assert [f.step for f in result.frames] == list(range(0, expected_stop + 1, k))
    assert result.frames[-1].stopped
    assert all(not f.stopped and f.max_force_dev_eV_A < trust_hi for f in result.frames[:-1])
    np.testing.assert_allclose(
        [f.max_force_dev_eV_A for f in result.frames], uncertainty[: expected_stop + 1 : k]
    )


def test_temperature_stop_between_full_evaluations_gets_committee_results() -> None:
    atoms = copper()
    atoms.rattle(0.25, seed=0)  # potential energy that turns into heat
    calc = fake(0)
    result = run_walker(
        atoms,
        calc,
        steps=100,
        sample_interval_steps=50,
        trust_hi_eV_A=np.inf,
        **{**WALKER, "temperature_K": 300.0, "max_temperature_factor": 1.2},
    )
    assert result.stop_reason is not None and result.stop_reason.startswith("temperature")
    last = result.frames[-1]
    assert last.stopped and last.step % 50 != 0
    assert last.max_force_dev_eV_A > 0
    assert result.committee_evaluations == calc.committee_evaluations == 2


def test_mean_calculator_is_checked_every_step() -> None:
    calc = fake(None)
    result = run_walker(
        copper(), calc, steps=20, sample_interval_steps=10, trust_hi_eV_A=np.inf, **WALKER
    )
    assert result.committee_evaluations == 21
    assert [f.step for f in result.frames] == [0, 10, 20]


def test_committee_interval_must_divide_sampling() -> None:
    with pytest.raises(ExplorationError, match="committee_interval_steps"):
        run_walker(
            copper(),
            fake(0),
            steps=10,
            sample_interval_steps=10,
            committee_interval_steps=3,
            trust_hi_eV_A=1.0,
            **WALKER,
        )
    with pytest.raises(ValidationError, match="must divide"):
        ExplorationConfig(sample_interval_steps=10, committee_interval_steps=4)
    assert ExplorationConfig(sample_interval_steps=10).committee_every_steps == 10
    assert ExplorationConfig(committee_interval_steps=5).committee_every_steps == 5
    assert ExplorationConfig().propagator == "member"
    with pytest.raises(ValueError, match="propagator"):
        FakeCommittee(3, propagator=3)
