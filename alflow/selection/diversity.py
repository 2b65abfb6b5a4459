"""Diversity: structure descriptors and farthest point sampling over them.

RDF-like descriptors (:func:`soap_free_descriptor`), mean MACE node features
(:func:`mace_structure_descriptors`), FPS over structures or over their most
novel atom, and :func:`fps_pick`, the diverse pick of one iteration.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms
from scipy.spatial.distance import cdist

__all__ = [
    "descriptor_species",
    "farthest_point_sampling",
    "farthest_point_sampling_atoms",
    "fps_pick",
    "mace_structure_descriptors",
    "soap_free_descriptor",
]

logger = logging.getLogger(__name__)


def descriptor_species(structures: Sequence[Atoms]) -> tuple[int, ...]:
    """Sorted atomic numbers present in any of ``structures``.

    Pass the result as ``species`` to :func:`soap_free_descriptor` to get
    descriptors of equal length for structures of different compositions.
    """
    numbers: set[int] = set()
    for atoms in structures:
        numbers.update(int(z) for z in np.unique(atoms.numbers))
    return tuple(sorted(numbers))


def soap_free_descriptor(
    atoms: Atoms,
    r_cut_A: float = 5.0,
    n_bins: int = 24,
    *,
    species: Sequence[int] | None = None,
) -> np.ndarray:
    """Cheap, invariant fingerprint of a structure (no extra packages).

    For every unordered pair of species (a, b) with a ≤ b (atomic numbers,
    sorted), a smoothed radial distribution: each ordered neighbour pair
    (i, j) with distance ``d < r_cut_A`` adds
    ``f_c(d) · exp(-(d - r_k)² / (2 σ²))`` to bin ``k`` of channel
    (Z_i, Z_j), where ``r_k`` are ``n_bins`` equally spaced centres in
    ``(0, r_cut_A]``, ``σ`` is their spacing and
    ``f_c(d) = (1 + cos(π d / r_cut_A)) / 2`` makes the descriptor continuous
    when atoms cross the cutoff. Channels are divided by the number of atoms,
    so a supercell has the descriptor of its primitive cell. A last entry is
    the cube root of the volume per atom (Å; 0 without a 3D-periodic cell),
    which puts strain on the same length scale as the histograms.

    The descriptor is invariant under rotation, translation, permutation of
    atoms and choice of periodic images, and changes smoothly with strain.

    Parameters
    ----------
    atoms
        The structure (periodic images included along periodic directions).
    r_cut_A
        Cutoff radius (Å).
    n_bins
        Gaussian bins per species pair.
    species
        Atomic numbers that define the channels (default: those in ``atoms``).
        Use one list (:func:`descriptor_species`) for structures that must be
        compared; pairs involving other species are ignored.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_pairs * n_bins + 1,)`` with ``n_pairs = S (S + 1) / 2``.
    """
    if r_cut_A <= 0 or n_bins < 1:
        raise ValueError(f"need r_cut_A > 0 and n_bins >= 1, got {r_cut_A} and {n_bins}")
    if species is None:
        species = sorted({int(z) for z in atoms.numbers})
    species = sorted(int(z) for z in species)
    n_species = len(species)
    pair_channel = -np.ones((n_species, n_species), dtype=int)
    channel = 0
    for a in range(n_species):
        for b in range(a, n_species):
            pair_channel[a, b] = pair_channel[b, a] = channel
            channel += 1
    histogram = np.zeros((channel, n_bins))
    n_atoms = len(atoms)
    if n_atoms > 1 or (n_atoms == 1 and atoms.pbc.any()):
        from ase.neighborlist import neighbor_list

        first, second, distance = neighbor_list("ijd", atoms, float(r_cut_A))
        lookup = {z: index for index, z in enumerate(species)}
        species_index = np.array([lookup.get(int(z), -1) for z in atoms.numbers], dtype=int)
        si, sj = species_index[first], species_index[second]
        keep = (si >= 0) & (sj >= 0)
        if np.any(keep):
            channels = pair_channel[si[keep], sj[keep]]
            d = distance[keep]
            spacing = r_cut_A / n_bins
            centres = spacing * np.arange(1, n_bins + 1)
            cutoff = 0.5 * (1.0 + np.cos(np.pi * d / r_cut_A))
            weights = cutoff[:, None] * np.exp(-0.5 * ((d[:, None] - centres) / spacing) ** 2)
            np.add.at(histogram, channels, weights)
    if n_atoms:
        histogram /= n_atoms
    volume_term = 0.0
    if n_atoms and atoms.pbc.all():
        volume_term = float(abs(atoms.get_volume()) / n_atoms) ** (1.0 / 3.0)
    return np.concatenate([histogram.ravel(), [volume_term]])


def farthest_point_sampling(
    descriptors: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    existing: np.ndarray | None = None,
    start_index: int | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy farthest point sampling in descriptor space (Euclidean).

    Each pick is the item farthest from everything picked so far and from
    ``existing``; with ``weights``, the item with the largest
    ``weight × distance`` (uncertainty-weighted FPS: novel *and* uncertain).

    Parameters
    ----------
    descriptors
        Shape (n, d).
    k
        How many to pick (at most n).
    seed
        Chooses the first item at random when neither ``start_index`` nor
        ``existing`` decides it.
    existing
        Descriptors (m, d) of structures already labeled: distances count to
        them too, so near-copies of known structures are picked last.
    start_index
        First item to pick (e.g. the most uncertain one). Without it the
        first item is the one farthest from ``existing`` (weighted), or a
        seeded random one.
    weights
        Non-negative weight of each item (n,), e.g. its committee deviation;
        default: all 1 (plain FPS).

    Returns
    -------
    numpy.ndarray of int
        Indices into ``descriptors`` in pick order.
    """
    points = np.asarray(descriptors, dtype=float)
    if points.ndim != 2:
        raise ValueError(f"descriptors must be 2D (n, d), got shape {points.shape}")
    n = points.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=int)
    if weights is None:
        weight = np.ones(n)
    else:
        weight = np.asarray(weights, dtype=float).reshape(-1)
        if weight.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {weight.shape}")
        weight = np.where(np.isfinite(weight), np.maximum(weight, 0.0), 0.0)
    min_distance = np.full(n, np.inf)
    if existing is not None and np.size(existing):
        known = np.asarray(existing, dtype=float)
        if known.ndim != 2 or known.shape[1] != points.shape[1]:
            raise ValueError(f"existing must have shape (m, {points.shape[1]}), got {known.shape}")
        min_distance = cdist(points, known).min(axis=1)

    def absorb(index: int) -> None:
        np.minimum(min_distance, np.linalg.norm(points - points[index], axis=1), out=min_distance)

    return _greedy_farthest(n, k, lambda: weight * min_distance, absorb, start_index, seed)


def _greedy_farthest(
    n: int,
    k: int,
    novelty: Callable[[], np.ndarray],
    absorb: Callable[[int], None],
    start_index: int | None,
    seed: int,
) -> np.ndarray:
    """The greedy loop of farthest point sampling, whatever "far" means.

    ``novelty()`` scores every item against everything picked or known so
    far (inf or NaN everywhere while nothing is); ``absorb(i)`` adds item i
    to the picked set. The first item is ``start_index``, else the most novel
    one, else a seeded random one.
    """
    if start_index is not None:
        if not 0 <= start_index < n:
            raise IndexError(f"start_index {start_index} out of range for {n} items")
        current = int(start_index)
    else:
        scores = novelty()
        if np.isfinite(scores).any():
            current = int(np.argmax(np.where(np.isnan(scores), -np.inf, scores)))
        else:
            current = int(np.random.default_rng(seed).integers(n))
    picked = [current]
    chosen = np.zeros(n, dtype=bool)
    chosen[current] = True
    while len(picked) < k:
        absorb(current)
        current = int(np.argmax(np.where(chosen, -np.inf, novelty())))
        picked.append(current)
        chosen[current] = True
    return np.asarray(picked, dtype=int)


def farthest_point_sampling_atoms(
    atom_descriptors: Sequence[np.ndarray],
    k: int,
    *,
    existing: np.ndarray | None = None,
    start_index: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Greedy farthest point sampling of structures by their most novel atom.

    The distance of a structure to a set of structures is the largest, over
    its atoms, of the distance from that atom's environment descriptor to
    the nearest atom environment of the set: a structure is as new as its
    newest atom. This is the per-atom view extrapolation grades take (an
    8-atom cell hot in one corner looks ordinary in its mean descriptor).

    Parameters
    ----------
    atom_descriptors
        One array (atoms, d) per structure, e.g.
        :func:`mace_atom_descriptors`.
    k
        How many structures to pick (at most their number).
    existing
        Atom descriptors (m, d) of everything already labeled, stacked:
        distances count to them too.
    start_index
        First structure to pick (e.g. the most uncertain one); default the
        one farthest from ``existing``, or a seeded random one.
    seed
        Chooses the first structure when nothing else does.

    Returns
    -------
    numpy.ndarray of int
        Indices into ``atom_descriptors`` in pick order.
    """
    blocks = [np.asarray(block, dtype=float) for block in atom_descriptors]
    n = len(blocks)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=int)
    if any(block.ndim != 2 or len(block) == 0 for block in blocks):
        raise ValueError("atom_descriptors must be one non-empty (atoms, d) array per structure")
    width = blocks[0].shape[1]
    if any(block.shape[1] != width for block in blocks):
        raise ValueError("atom_descriptors of different widths")
    points = np.concatenate(blocks)
    starts = np.concatenate([[0], np.cumsum([len(block) for block in blocks])[:-1]])
    atom_min = np.full(len(points), np.inf)
    if existing is not None and np.size(existing):
        known = np.asarray(existing, dtype=float)
        if known.ndim != 2 or known.shape[1] != width:
            raise ValueError(f"existing must have shape (m, {width}), got {known.shape}")
        atom_min = cdist(points, known).min(axis=1)

    def novelty() -> np.ndarray:
        return np.maximum.reduceat(atom_min, starts)

    def absorb(index: int) -> None:
        np.minimum(atom_min, cdist(points, blocks[index]).min(axis=1), out=atom_min)

    return _greedy_farthest(n, k, novelty, absorb, start_index, seed)


def fps_pick(
    structures: Sequence[Atoms],
    uncertainty: np.ndarray,
    k: int,
    *,
    seed: int,
    known_descriptors: np.ndarray | None,
    descriptors: np.ndarray | None = None,
    weighted: bool = False,
    atom_descriptors: Sequence[np.ndarray] | None = None,
    known_atom_descriptors: np.ndarray | None = None,
) -> list[int]:
    """FPS over structures, starting from the most uncertain one (weighted by it if asked).

    With ``atom_descriptors`` a structure is measured by its most novel atom
    (:func:`farthest_point_sampling_atoms`); otherwise by its structure
    descriptor (given, or :func:`soap_free_descriptor`).
    """
    start = int(np.argmax(uncertainty)) if len(uncertainty) else None
    if start is not None and math.isnan(uncertainty[start]):
        start = None
    if atom_descriptors is not None:
        return farthest_point_sampling_atoms(
            atom_descriptors, k, existing=known_atom_descriptors, start_index=start, seed=seed
        ).tolist()
    species = descriptor_species(structures)
    if descriptors is None:
        descriptors = np.stack([soap_free_descriptor(a, species=species) for a in structures])
        how = f"soap_free_descriptor(atoms, species={species})"
    else:
        descriptors = np.asarray(descriptors, dtype=float)
        how = "the same method as the candidates' descriptors"
    existing = None
    if known_descriptors is not None and np.size(known_descriptors):
        existing = np.asarray(known_descriptors, dtype=float)
        if existing.ndim != 2 or existing.shape[1] != descriptors.shape[1]:
            raise ValueError(
                f"known_descriptors have shape {existing.shape}, candidates' descriptors have "
                f"{descriptors.shape[1]} columns: compute them with {how}"
            )
    return [
        int(i)
        for i in farthest_point_sampling(
            descriptors,
            k,
            seed=seed,
            existing=existing,
            start_index=start,
            weights=uncertainty if weighted else None,
        )
    ]


def mace_structure_descriptors(calc: object, frames_atoms: Sequence[Atoms]) -> np.ndarray | None:
    """Mean invariant MACE node features of each structure, from a committee's first member.

    Parameters
    ----------
    calc
        A committee with ``structure_descriptors``
        (:meth:`alflow.committee.CommitteeCalculator.structure_descriptors`);
        other calculators (e.g. :class:`alflow.testing.FakeCommittee`) give None.
    frames_atoms
        The structures.

    Returns
    -------
    numpy.ndarray or None
        Shape (n, d); None when the calculator has no MACE descriptors or
        their evaluation fails (the caller falls back to
        :func:`soap_free_descriptor`).
    """
    describe = getattr(calc, "structure_descriptors", None)
    if describe is None:
        return None
    try:
        return describe(frames_atoms)
    except Exception as exc:  # any failure of the optional path falls back to RDF
        logger.warning("MACE descriptors unavailable (%s); falling back to RDF descriptors", exc)
        return None
