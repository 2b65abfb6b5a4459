"""Uncertainty-weighted FPS and FPS restricted to the most uncertain candidates, on known arrays."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from alflow.config import SelectionConfig
from alflow.selection import FpsVariant, farthest_point_sampling, select_candidates
from alflow.structures import structure_key


def frames(n: int):
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.05, seed=200 + i)
        out.append(atoms)
    return out


def test_weighted_fps_trades_distance_for_weight():
    points = np.array([[0.0], [1.0], [2.0], [10.0]])
    plain = farthest_point_sampling(points, 2, start_index=0)
    assert plain.tolist() == [0, 3]
    weights = np.array([1.0, 1.0, 1.0, 0.01])  # 2 x 1 > 10 x 0.01
    weighted = farthest_point_sampling(points, 2, start_index=0, weights=weights)
    assert weighted.tolist() == [0, 2]
    # all-equal weights are plain FPS; NaN weights count as 0
    same = farthest_point_sampling(points, 4, start_index=0, weights=np.full(4, 3.0))
    assert same.tolist() == farthest_point_sampling(points, 4, start_index=0).tolist()
    nan = farthest_point_sampling(points, 2, start_index=0, weights=[1, 1, 1, np.nan])
    assert nan.tolist() == [0, 2]
    # without a start, the first pick maximises weight x distance to the known set
    first = farthest_point_sampling(
        points, 1, existing=np.array([[0.0]]), weights=np.array([1.0, 1.0, 1.0, 0.01])
    )
    assert first.tolist() == [2]
    with pytest.raises(ValueError):
        farthest_point_sampling(points, 2, weights=np.ones(3))


def test_select_candidates_weighting_and_top_factor():
    atoms = frames(6)
    keys = [structure_key(a) for a in atoms]
    descriptors = np.array([[0.0], [1.0], [2.0], [10.0], [0.5], [1.5]])
    score = np.array([0.40, 0.30, 0.30, 0.06, 0.20, 0.25])
    config = SelectionConfig(max_per_iteration=2)

    def pick(**kwargs):
        return select_candidates(
            atoms,
            score,
            keys,
            selection=config,
            budget=2,
            sanity_check=lambda _a: None,
            descriptors=descriptors,
            fps=FpsVariant(**kwargs),
        ).selected

    assert pick() == [0, 3]  # plain FPS from the most uncertain: the far, barely uncertain one
    assert pick(weighting="score") == [0, 2]  # 2 x 0.30 > 10 x 0.06
    # FPS among the top ceil(1.5 x 2) = 3 by score: frames 0, 1, 2
    assert pick(top_factor=1.5) == [0, 2]
    assert pick(top_factor=1.0) == [0, 1]  # = the two most uncertain (stable order)
    with pytest.raises(ValueError):
        pick(weighting="bogus")


def test_atom_fps_measures_a_structure_by_its_most_novel_atom():
    from alflow.selection import farthest_point_sampling_atoms

    # structure 0 equals the known atom; 1 has one far atom (5); 2 two middling (1); 3 one at 3
    blocks = [np.zeros((2, 1)), np.array([[0.0], [5.0]]), np.ones((2, 1)), np.array([[3.0], [0.0]])]
    order = farthest_point_sampling_atoms(blocks, 4, existing=np.zeros((1, 1)))
    # after 1, structure 3's atom at 3 is 2 from the atom at 5, farther than 2's atoms (1)
    assert order.tolist() == [1, 3, 2, 0]
    assert farthest_point_sampling_atoms(blocks, 2, start_index=2).tolist() == [2, 1]
    assert farthest_point_sampling_atoms(blocks, 0).size == 0
    with pytest.raises(ValueError, match="widths"):
        farthest_point_sampling_atoms([np.zeros((1, 1)), np.zeros((1, 2))], 1)
    with pytest.raises(ValueError, match="existing"):
        farthest_point_sampling_atoms(blocks, 1, existing=np.zeros((1, 2)))
    with pytest.raises(IndexError):
        farthest_point_sampling_atoms(blocks, 1, start_index=9)


def test_select_candidates_with_atom_descriptors():
    structures = frames(4)
    keys = [structure_key(a) for a in structures]
    atoms = [np.zeros((2, 1)), np.array([[0.0], [5.0]]), np.ones((2, 1)), np.array([[3.0], [0.0]])]
    result = select_candidates(
        structures,
        np.array([0.4, 0.1, 0.1, 0.1]),
        keys,
        selection=SelectionConfig(trust_lo_eV_A=0.05, trust_hi_eV_A=0.5),
        budget=2,
        fps=FpsVariant(atom_descriptors=atoms, known_atom_descriptors=np.zeros((1, 1))),
    )
    assert result.selected == [0, 1]  # the most uncertain, then the most novel atom
    with pytest.raises(ValueError, match="weighted"):
        select_candidates(
            structures,
            np.array([0.4, 0.1, 0.1, 0.1]),
            keys,
            selection=SelectionConfig(),
            budget=2,
            fps=FpsVariant(atom_descriptors=atoms, weighting="score"),
        )
