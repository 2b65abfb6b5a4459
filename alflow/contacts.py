"""Close-contact seed frames: the data that teach a committee to repel.

Rattled copies of a crystal never bring two atoms much closer than about 85 %
of the nearest-neighbour distance, so a model trained on them has never seen
a close pair. Two kinds of frames, labeled by the campaign's own reference
method before iteration 0, fill that gap:

- **isolated dimers** of every element pair in a vacuum box (non-periodic),
  at ``dimer_distance_factors`` × the sum of the two covalent radii: the
  pair repulsion itself;
- **squeezed pairs**: copies of each initial structure in which one
  nearest-neighbour pair of each element pair is pushed together,
  symmetrically along its bond, to ``squeeze_factors`` × its distance: a
  close contact inside the solid, which is what a hot walker meets.

Below the shortest of these distances the repulsive prior of
:mod:`alflow.committee.repulsion` takes over.

:class:`ContactLimits` is how close two atoms may come before a walker stops
and a frame is not sent to DFT: by default a fraction of the shortest
distance of that element pair in the training data, so the limits follow the
data as they grow, rather than one fixed number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations_with_replacement

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from alflow.config import SanityConfig, ShortRangeConfig

__all__ = [
    "ContactLimits",
    "dimer",
    "mark_short_range",
    "pair_key",
    "short_range_frames",
    "squeezed_pairs",
]

#: Closest allowed pair (Å) when neither the config nor the data say more.
FALLBACK_MIN_DISTANCE_A = 1.5


def pair_key(a: str, b: str) -> tuple[str, str]:
    """The alphabetically sorted element pair, e.g. ``("Au", "Cu")``."""
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class ContactLimits:
    """Closest allowed distance (Å) of each element pair; ``default_A`` for the others."""

    default_A: float
    pairs_A: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def from_data(
        cls, sanity: SanityConfig, shortest_A: Mapping[tuple[str, str], float]
    ) -> ContactLimits:
        """``sanity.min_distance_A`` if set, else ``min_distance_fraction`` × the data's pairs."""
        if sanity.min_distance_A is not None:
            return cls(float(sanity.min_distance_A))
        pairs = {k: sanity.min_distance_fraction * d for k, d in shortest_A.items()}
        return cls(min(pairs.values()) if pairs else FALLBACK_MIN_DISTANCE_A, pairs)

    @classmethod
    def from_record(cls, sanity: SanityConfig, record: Mapping | None) -> ContactLimits:
        """From a model record's ``shortest_training_distance_A`` (``"A-B": Å``)."""
        shortest = ((record or {}).get("shortest_training_distance_A")) or {}
        return cls.from_data(sanity, {pair_key(*k.split("-")): v for k, v in shortest.items()})

    def limit_A(self, a: str, b: str) -> float:
        """The closest allowed distance of an ``a``–``b`` pair (Å)."""
        return float(self.pairs_A.get(pair_key(a, b), self.default_A))

    def violation(self, atoms: Atoms) -> tuple[float, int, int, float] | None:
        """The closest pair below its limit: (distance Å, i, j, limit Å), or None."""
        from ase.neighborlist import neighbor_list

        if len(atoms) < 2 and not atoms.pbc.any():
            return None
        cutoff = max([self.default_A, *self.pairs_A.values()])
        i, j, d = neighbor_list("ijd", atoms, cutoff, self_interaction=False)
        symbols = atoms.get_chemical_symbols()
        worst = None
        for n in np.flatnonzero(d < cutoff):
            limit = self.limit_A(symbols[i[n]], symbols[j[n]])
            if d[n] < limit and (worst is None or d[n] / limit < worst[0] / worst[3]):
                worst = (float(d[n]), int(i[n]), int(j[n]), limit)
        return worst

    def describe(self) -> str:
        """``Cu-Cu 1.52 Å`` …, or the one limit."""
        if not self.pairs_A:
            return f"{self.default_A:.2f} Å"
        return ", ".join(f"{a}-{b} {v:.2f} Å" for (a, b), v in sorted(self.pairs_A.items()))


def dimer(a: str, b: str, distance_A: float, vacuum_A: float) -> Atoms:
    """Two atoms ``distance_A`` apart along z, centred in a non-periodic vacuum box."""
    atoms = Atoms([a, b], positions=[[0.0, 0.0, 0.0], [0.0, 0.0, distance_A]], pbc=False)
    atoms.center(vacuum=vacuum_A)
    return atoms


def _covalent_sum_A(a: str, b: str) -> float:
    return float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


def _nearest_pairs(atoms: Atoms) -> dict[tuple[str, str], tuple[int, int, np.ndarray]]:
    """For each element pair closer than 4 Å: its closest pair (i, j, vector from i to j)."""
    from ase.neighborlist import neighbor_list

    i, j, d, vectors = neighbor_list("ijdD", atoms, 4.0)
    symbols = atoms.get_chemical_symbols()
    found: dict[tuple[str, str], tuple[int, int, np.ndarray]] = {}
    for n in np.argsort(d, kind="stable"):
        if i[n] >= j[n]:
            continue
        pair = pair_key(symbols[i[n]], symbols[j[n]])
        if pair not in found:
            found[pair] = (int(i[n]), int(j[n]), vectors[n])
    return found


def squeezed_pairs(atoms: Atoms, factors: Sequence[float]) -> list[Atoms]:
    """Copies of ``atoms`` with one nearest pair per element pair pushed to ``factor × d``."""
    frames = []
    for i, j, vector in _nearest_pairs(atoms).values():
        distance = float(np.linalg.norm(vector))
        unit = vector / distance
        for factor in factors:
            shift = 0.5 * (1.0 - factor) * distance * unit
            copy = atoms.copy()
            copy.positions[i] += shift
            copy.positions[j] -= shift
            frames.append(copy)
    return frames


def short_range_frames(structures: Sequence[Atoms], config: ShortRangeConfig) -> list[Atoms]:
    """Dimers of every element pair of ``structures`` and squeezed copies of each structure."""
    elements = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
    frames = [
        dimer(a, b, factor * _covalent_sum_A(a, b), config.dimer_vacuum_A)
        for a, b in combinations_with_replacement(elements, 2)
        for factor in config.dimer_distance_factors
    ]
    for atoms in structures:
        if len(atoms) > 1 or atoms.pbc.any():
            frames.extend(squeezed_pairs(atoms, config.squeeze_factors))
    for atoms in frames:
        atoms.calc = None
    return frames


def mark_short_range(frames: Sequence[Atoms], loss_weight: float) -> int:
    """Give the short-range frames (``info["origin_kind"]``) their MACE loss weight.

    Sets ``config_type = "short_range"`` and ``config_weight`` in their
    ``info``, which the training files keep; returns how many were marked.
    """
    marked = 0
    for atoms in frames:
        if atoms.info.get("origin_kind") == "short_range":
            atoms.info["config_type"] = "short_range"
            atoms.info["config_weight"] = float(loss_weight)
            marked += 1
    return marked
