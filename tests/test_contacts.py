"""Close contacts: the short-range seed frames, contact limits from the data, the prior's radii."""

from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np
import pytest
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii

from alflow.committee.repulsion import repulsion_radii_A, zbl_pair_energy_eV
from alflow.config import SanityConfig, ShortRangeConfig
from alflow.contacts import ContactLimits, mark_short_range, short_range_frames
from alflow.labeling.sanity import sanity_reason
from alflow.structures import shortest_pair_distances_A


def _cu3au():
    cell = bulk("Cu", "fcc", a=3.75, cubic=True)
    cell[0].symbol = "Au"
    return cell.repeat((2, 2, 2))


def test_short_range_frames_cover_every_pair_at_the_asked_distances() -> None:
    config = ShortRangeConfig(dimer_distance_factors=(0.7, 1.0), squeeze_factors=(0.75,))
    frames = short_range_frames([_cu3au()], config)
    dimers = [a for a in frames if len(a) == 2]
    assert len(dimers) == 3 * 2  # Au-Au, Au-Cu, Cu-Cu at two distances
    for atoms in dimers:
        assert not atoms.pbc.any()
        radii = sum(covalent_radii[atomic_numbers[s]] for s in atoms.get_chemical_symbols())
        assert atoms.get_distance(0, 1) / radii == pytest.approx(0.7) or atoms.get_distance(
            0, 1
        ) / radii == pytest.approx(1.0)
        assert atoms.cell.lengths().min() >= 2 * config.dimer_vacuum_A
    squeezed = [a for a in frames if len(a) > 2]
    shortest = shortest_pair_distances_A(squeezed)
    nearest_A = 3.75 / np.sqrt(2)
    # one squeezed copy per element pair within 4 Å: Au-Cu and Cu-Cu (2.65 Å), Au-Au (3.75 Å)
    assert len(squeezed) == 3
    assert min(shortest.values()) == pytest.approx(0.75 * nearest_A, abs=1e-6)


def test_contact_limits_follow_the_data_per_pair() -> None:
    shortest = {("Au", "Cu"): 1.8, ("Cu", "Cu"): 2.2}
    limits = ContactLimits.from_data(SanityConfig(), shortest)
    assert limits.limit_A("Cu", "Au") == pytest.approx(0.85 * 1.8)
    assert limits.limit_A("Cu", "Cu") == pytest.approx(0.85 * 2.2)
    assert limits.limit_A("Au", "Au") == pytest.approx(0.85 * 1.8)  # unseen: the smallest
    fixed = ContactLimits.from_data(SanityConfig(min_distance_A=1.2), shortest)
    assert fixed.limit_A("Cu", "Cu") == 1.2 and not fixed.pairs_A

    atoms = _cu3au()
    cu = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Cu"]
    vector = atoms.positions[cu[1]] - atoms.positions[cu[0]]
    atoms.positions[cu[1]] = atoms.positions[cu[0]] + 1.7 * vector / np.linalg.norm(vector)
    distance, i, j, limit = limits.violation(atoms)
    assert distance == pytest.approx(1.7) and {i, j} == {cu[0], cu[1]}
    assert limit == pytest.approx(0.85 * 2.2)  # 1.7 Å is fine for Au-Cu, not for Cu-Cu
    reason = sanity_reason(atoms, SanityConfig(), limits)
    assert reason is not None and "1.700 Å apart" in reason and "(Cu)" in reason
    assert sanity_reason(_cu3au(), SanityConfig(), limits) is None


def test_short_range_frames_get_their_loss_weight() -> None:
    frames = short_range_frames([_cu3au()], ShortRangeConfig())
    other = _cu3au()
    for atoms in frames:
        atoms.info["origin_kind"] = "short_range"
    other.info["origin_kind"] = "seed"
    assert mark_short_range([*frames, other], 0.1) == len(frames)
    assert all(a.info["config_weight"] == 0.1 for a in frames)
    assert "config_weight" not in other.info


def test_prior_radii_never_reach_into_the_data() -> None:
    shortest = {("Au", "Au"): 2.4, ("Au", "Cu"): 1.8, ("Cu", "Cu"): 2.0}
    radii = repulsion_radii_A(shortest, ["Au", "Cu", "Ni"])
    for a, b in combinations_with_replacement(["Au", "Cu"], 2):
        assert radii[a] + radii[b] <= shortest[(a, b)] + 1e-12
    assert radii["Ni"] == pytest.approx(0.5 * covalent_radii[atomic_numbers["Ni"]])
    # universal ZBL: steeply repulsive, tens of eV for Cu-Cu at 1.3 Å
    assert 30.0 < zbl_pair_energy_eV(29, 29, 1.3) < 200.0
    assert zbl_pair_energy_eV(29, 29, 1.0) > zbl_pair_energy_eV(29, 29, 1.3)
