"""Tests of alflow.selection: trust window, descriptors, FPS, de-duplication, budget."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from alflow.config import SelectionConfig
from alflow.selection import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    classify,
    deduplicate,
    descriptor_species,
    farthest_point_sampling,
    select_candidates,
    soap_free_descriptor,
)
from alflow.structures import structure_key


def rattled_copper(n: int, seed: int = 0, stdev_A: float = 0.05) -> list[Atoms]:
    """n distinct rattled 32-atom Cu cells."""
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
        atoms.rattle(stdev_A, seed=seed + i)
        frames.append(atoms)
    return frames


# ------------------------------------------------------------------ classify


def test_classify_boundaries_and_nan():
    values = np.array([0.0, 0.0499, 0.05, 0.3, 0.4999, 0.5, 2.0, np.nan, np.inf])
    labels = classify(values, 0.05, 0.5)
    assert labels.tolist() == [
        ACCURATE,
        ACCURATE,
        CANDIDATE,
        CANDIDATE,
        CANDIDATE,
        FAILED,
        FAILED,
        FAILED,
        FAILED,
    ]
    assert classify(np.zeros(0), 0.05, 0.5).shape == (0,)
    with pytest.raises(ValueError):
        classify(values, 0.5, 0.5)


# ------------------------------------------------------------------ FPS


def square_and_centre() -> np.ndarray:
    """Points 0-4: a cluster around the origin; 5-8: the corners of a square."""
    rng = np.random.default_rng(0)
    cluster = rng.normal(0.0, 0.01, (5, 2))
    corners = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    return np.vstack([cluster, corners])


def test_fps_picks_corners_after_the_start():
    points = square_and_centre()
    picked = farthest_point_sampling(points, 5, start_index=0)
    assert picked[0] == 0
    assert set(picked[1:].tolist()) == {5, 6, 7, 8}
    random_start = farthest_point_sampling(points, 6, seed=3)
    assert len(set(random_start.tolist())) == 6
    assert {5, 6, 7, 8} <= set(random_start.tolist())


def test_fps_counts_distances_to_existing():
    points = square_and_centre()
    existing = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]])
    picked = farthest_point_sampling(points, 2, existing=existing)
    assert picked.tolist()[0] == 8  # the only corner not yet labeled
    assert picked.tolist()[1] in range(5)  # then the centre, not a known corner


def test_fps_edge_cases():
    points = square_and_centre()
    assert farthest_point_sampling(points, 0).tolist() == []
    assert farthest_point_sampling(np.zeros((0, 2)), 3).tolist() == []
    assert sorted(farthest_point_sampling(points, 50).tolist()) == list(range(9))
    with pytest.raises(ValueError):
        farthest_point_sampling(points, 2, existing=np.zeros((2, 3)))


# ------------------------------------------------------------------ dedup


def test_deduplicate_keeps_first_new_occurrence():
    mask = deduplicate(["a", "b", "a", "c", "b", "d"], known_keys={"c"})
    assert mask.tolist() == [True, True, False, False, False, True]
    assert deduplicate([], ()).tolist() == []


# ------------------------------------------------------------------ descriptor


def test_descriptor_is_invariant_and_sensitive_to_strain():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.symbols[[0, 5]] = "Au"
    atoms.rattle(0.05, seed=1)
    reference = soap_free_descriptor(atoms)
    assert reference.shape == (3 * 24 + 1,)

    rotated = atoms.copy()
    rotation = Rotation.from_euler("xyz", [20, 35, -50], degrees=True).as_matrix()
    rotated.set_cell(atoms.cell @ rotation.T, scale_atoms=True)
    translated = atoms.copy()
    translated.positions += [0.7, -1.3, 2.1]
    permuted = atoms[np.random.default_rng(0).permutation(len(atoms))]
    wrapped = translated.copy()
    wrapped.wrap()
    for other in (rotated, translated, permuted, wrapped):
        assert np.allclose(soap_free_descriptor(other), reference, atol=1e-10)
    # a supercell is the same material
    assert np.allclose(soap_free_descriptor(atoms.repeat((2, 1, 1))), reference, atol=1e-10)

    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.01, scale_atoms=True)
    change = np.linalg.norm(soap_free_descriptor(strained) - reference)
    assert change > 0.05 * np.linalg.norm(reference)  # 1 % strain: a 5 % change
    sheared = atoms.copy()
    sheared.set_cell(atoms.cell @ np.array([[1, 0.02, 0], [0, 1, 0], [0, 0, 1]]), True)
    assert not np.allclose(soap_free_descriptor(sheared), reference, atol=1e-3)


def test_descriptor_species_channels():
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    alloy = copper.copy()
    alloy.symbols[0] = "Au"
    species = descriptor_species([copper, alloy])
    assert species == (29, 79)
    assert soap_free_descriptor(copper, species=species).shape == (3 * 24 + 1,)
    assert soap_free_descriptor(copper).shape == (24 + 1,)
    cluster = Atoms("Cu", positions=[[0, 0, 0]])
    assert np.all(soap_free_descriptor(cluster) == 0)


# ------------------------------------------------------------------ select_candidates

CONFIG = SelectionConfig(trust_lo_eV_A=0.05, trust_hi_eV_A=0.5, max_per_iteration=8)


def test_select_candidates_budget_and_counts():
    frames = rattled_copper(12)
    uncertainty = np.array([0.01, 0.02, 0.1, 0.2, 0.3, 0.4, 0.45, 0.6, 0.9, np.nan, 0.15, 0.25])
    keys = [structure_key(a) for a in frames]
    result = select_candidates(frames, uncertainty, keys, selection=CONFIG, budget=3)
    assert result.counts[ACCURATE] == 2
    assert result.counts[FAILED] == 3
    assert result.counts[CANDIDATE] == 7
    assert result.counts["selected"] == 3
    assert result.counts["over_budget"] == 4
    assert len(set(result.selected)) == 3
    assert result.selected[0] == 6  # FPS starts from the most uncertain candidate
    assert set(result.selected) <= {2, 3, 4, 5, 6, 10, 11}
    assert result.classes[9] == FAILED
    # the per-iteration cap wins over a larger budget
    capped = select_candidates(
        frames,
        uncertainty,
        keys,
        selection=CONFIG.model_copy(update={"max_per_iteration": 2}),
        budget=100,
    )
    assert len(capped.selected) == 2
    # without diversity: the most uncertain first
    plain = select_candidates(
        frames,
        uncertainty,
        keys,
        selection=CONFIG.model_copy(update={"diversity": "none"}),
        budget=3,
    )
    assert plain.selected == [6, 5, 4]


def test_select_candidates_fps_uses_known_descriptors():
    frames = rattled_copper(4, stdev_A=0.02)
    far = rattled_copper(1, seed=100, stdev_A=0.3)[0]
    frames.append(far)
    uncertainty = np.array([0.4, 0.1, 0.1, 0.1, 0.1])
    keys = [structure_key(a) for a in frames]
    result = select_candidates(frames, uncertainty, keys, selection=CONFIG, budget=2)
    assert result.selected == [0, 4]  # start at the most uncertain, then the odd one out
    species = descriptor_species(frames)
    known = np.stack([soap_free_descriptor(far, species=species)])
    result = select_candidates(
        frames, uncertainty, keys, selection=CONFIG, budget=2, known_descriptors=known
    )
    assert result.selected[0] == 0 and result.selected[1] != 4
    with pytest.raises(ValueError, match="species"):
        select_candidates(
            frames, uncertainty, keys, selection=CONFIG, budget=2, known_descriptors=np.ones((1, 5))
        )


def test_select_candidates_rejects_duplicates_and_insane_frames():
    frames = rattled_copper(5)
    frames[3].positions[1] = frames[3].positions[0] + [0.4, 0.0, 0.0]
    frames.append(frames[0].copy())  # 5: same content as 0
    uncertainty = np.full(6, 0.2)
    keys = [structure_key(a) for a in frames]
    result = select_candidates(
        frames, uncertainty, keys, selection=CONFIG, budget=8, known_keys={keys[2]}
    )
    assert result.rejected[2] == "duplicate of a known structure"
    assert result.rejected[5] == "duplicate of frame 0"
    assert result.rejected[3] == "sanity: atoms 0 (Cu) and 1 (Cu) are 0.400 Å apart (< 1.5 Å)"
    assert sorted(result.selected) == [0, 1, 4]
    assert result.counts["duplicate"] == 2
    assert result.counts["rejected"] == 1
    assert result.counts["selected"] == 3

    def no_index_one(atoms: Atoms) -> str | None:
        return "custom" if atoms is frames[1] else None

    custom = select_candidates(
        frames, uncertainty, keys, selection=CONFIG, budget=8, sanity_check=no_index_one
    )
    assert custom.rejected[1] == "sanity: custom"
    assert 3 in custom.selected  # the custom check replaces the built-in one


def test_select_candidates_empty_and_nothing_to_label():
    empty = select_candidates([], np.zeros(0), [], selection=CONFIG, budget=5)
    assert empty.selected == [] and empty.rejected == {}
    assert empty.counts["selected"] == 0 and empty.counts[CANDIDATE] == 0
    frames = rattled_copper(3)
    keys = [structure_key(a) for a in frames]
    accurate = select_candidates(frames, np.full(3, 0.01), keys, selection=CONFIG, budget=5)
    assert accurate.selected == [] and accurate.counts[ACCURATE] == 3
    no_budget = select_candidates(frames, np.full(3, 0.2), keys, selection=CONFIG, budget=0)
    assert no_budget.selected == [] and no_budget.counts["over_budget"] == 3
    with pytest.raises(ValueError):
        select_candidates(frames, np.full(2, 0.2), keys, selection=CONFIG, budget=5)


def test_sanity_check():
    from alflow.labeling.sanity import sanity_reason as basic_sanity_check

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert basic_sanity_check(atoms, CONFIG.sanity) is None
    squeezed = atoms.copy()
    squeezed.set_cell(atoms.cell * 0.7, scale_atoms=True)
    assert "volume" in basic_sanity_check(squeezed, CONFIG.sanity)
    broken = atoms.copy()
    broken.positions[0, 0] = np.nan
    assert basic_sanity_check(broken, CONFIG.sanity) == "non-finite position of atom 0"
