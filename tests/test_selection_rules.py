"""Selection rules on arrays with known answers: window, relative form, audit, FPS, re-scoring."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from alflow.config import SelectionConfig
from alflow.selection import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    classify,
    mace_structure_descriptors,
    rescore_pending,
    score_frames,
    select_candidates,
)
from alflow.structures import structure_key
from alflow.testing import FakeCommittee


def frames(n: int, stdev_A: float = 0.05):
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.rattle(stdev_A, seed=100 + i)
        out.append(atoms)
    return out


def always_sane(_atoms):
    return None


def test_relative_score_and_window():
    config = SelectionConfig(deviation="relative", relative_eps_eV_A=1.0)
    forces = [np.zeros((2, 3)), np.full((2, 3), 1.0 / np.sqrt(3.0))]  # |F| = 0 and 1 eV/Å
    score = score_frames(np.array([0.1, 0.1]), forces, config)
    assert score.tolist() == pytest.approx([0.1, 0.05])
    assert classify(score, *config.fixed_window()).tolist() == [CANDIDATE, CANDIDATE]
    assert classify(score, 0.06, 0.5).tolist() == [CANDIDATE, ACCURATE]
    with pytest.raises(ValueError):
        score_frames(np.array([0.1]), None, config)
    absolute = score_frames(np.array([0.1, 0.2]), None, SelectionConfig())
    assert absolute.tolist() == [0.1, 0.2]


def test_window_override_and_counts():
    atoms = frames(6)
    keys = [structure_key(a) for a in atoms]
    score = np.array([0.01, 0.02, 0.1, 0.2, 0.3, 0.9])
    config = SelectionConfig(max_per_iteration=10, diversity="none")
    default = select_candidates(
        atoms, score, keys, selection=config, budget=10, sanity_check=always_sane
    )
    assert default.window == (0.05, 0.5)
    assert sorted(default.selected) == [2, 3, 4]
    narrow = select_candidates(
        atoms,
        score,
        keys,
        selection=config,
        budget=10,
        sanity_check=always_sane,
        window=(0.15, 0.25),
    )
    assert narrow.selected == [3]
    assert narrow.classes == [ACCURATE, ACCURATE, ACCURATE, CANDIDATE, FAILED, FAILED]
    assert narrow.counts["accurate"] == 3 and narrow.counts["failed"] == 2


def test_audit_takes_random_accurate_frames_within_half_the_budget():
    atoms = frames(10)
    keys = [structure_key(a) for a in atoms]
    score = np.array([0.01] * 6 + [0.1, 0.2, 0.3, 0.4])
    config = SelectionConfig(max_per_iteration=4, diversity="none")

    def select(budget: int, known: list[str]):
        return select_candidates(
            atoms,
            score,
            keys,
            selection=config,
            budget=budget,
            sanity_check=always_sane,
            audit_per_iteration=5,
            known_keys=known,
        )

    result = select(4, [keys[0]])
    assert len(result.audit) == 2  # at most half of the budget
    assert all(result.classes[i] == ACCURATE for i in result.audit)
    assert 0 not in result.audit  # already known
    assert result.selected[:2] == [9, 8]  # most uncertain candidates first
    assert result.selected[2:] == result.audit
    assert result.counts["audit"] == 2 and result.counts["selected"] == 4
    assert result.counts["over_budget"] == 2
    assert select(4, [keys[0]]).audit == result.audit  # seeded
    none = select(1, [])
    assert none.audit == [] and none.selected == [9]


def test_fps_uses_given_descriptors():
    atoms = frames(9)
    keys = [structure_key(a) for a in atoms]
    rng = np.random.default_rng(0)
    descriptors = np.vstack(
        [rng.normal(0, 0.01, (5, 2)), [[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]]
    )
    score = np.full(9, 0.1)
    score[0] = 0.2  # FPS starts at the most uncertain frame
    config = SelectionConfig(max_per_iteration=5)
    result = select_candidates(
        atoms,
        score,
        keys,
        selection=config,
        budget=5,
        sanity_check=always_sane,
        descriptors=descriptors,
    )
    assert result.selected[0] == 0
    assert set(result.selected[1:]) == {5, 6, 7, 8}
    # a known structure at a corner pushes that corner last
    known = select_candidates(
        atoms,
        score,
        keys,
        selection=config,
        budget=4,
        sanity_check=always_sane,
        descriptors=descriptors,
        known_descriptors=np.array([[1.0, 1.0]]),
    )
    assert 5 not in known.selected
    with pytest.raises(ValueError):
        select_candidates(
            atoms, score, keys, selection=config, budget=4, descriptors=descriptors[:3]
        )


def test_empty_input_selects_nothing():
    result = select_candidates(
        [], np.zeros(0), [], selection=SelectionConfig(), budget=8, audit_per_iteration=2
    )
    assert result.selected == [] and result.audit == []
    assert result.counts["candidate"] == 0


def test_rescore_pending_drops_frames_now_accurate():
    atoms = frames(4, stdev_A=0.02)
    committee = FakeCommittee(3, noise_eV_A=0.02, seed=1)
    config = SelectionConfig()
    result = rescore_pending(atoms, committee, 10.0, config)
    assert result.drop.all()
    assert np.all(result.max_force_dev_eV_A > 0)
    none = rescore_pending(atoms, committee, 0.0, config)
    assert not none.drop.any()
    middle = float(np.median(result.max_force_dev_eV_A))
    mixed = rescore_pending(atoms, committee, middle, config)
    assert mixed.drop.tolist() == (result.max_force_dev_eV_A < middle).tolist()
    relative = rescore_pending(atoms, committee, 10.0, SelectionConfig(deviation="relative"))
    assert np.all(relative.score < relative.max_force_dev_eV_A)


def test_mace_descriptors_need_mace_models():
    assert mace_structure_descriptors(FakeCommittee(2), frames(2)) is None
