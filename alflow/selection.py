"""Which explored frames get a DFT label: pure functions over arrays.

The selection of one iteration runs, in order:

1. :func:`classify` every frame by the committee's max force deviation
   (DP-GEN trust window): below ``trust_lo`` *accurate*, in
   ``[trust_lo, trust_hi)`` *candidate*, at or above ``trust_hi`` (or NaN)
   *failed*.
2. :func:`deduplicate` candidates against structures already known and
   against each other (content keys from :func:`alflow.structures.structure_key`).
3. A sanity check rejects unphysical candidates (overlapping atoms, NaN, ...).
4. Diversity: :func:`farthest_point_sampling` on
   :func:`soap_free_descriptor` descriptors, starting from the most uncertain
   candidate and counting distances to already-labeled structures, or simply
   the most uncertain ones, up to the budget.

Nothing here touches the database or FireWorks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from alflow.config import SanityConfig, SelectionConfig
from alflow.errors import StructureError

__all__ = [
    "ACCURATE",
    "CANDIDATE",
    "FAILED",
    "Selection",
    "basic_sanity_check",
    "classify",
    "deduplicate",
    "descriptor_species",
    "farthest_point_sampling",
    "select_candidates",
    "soap_free_descriptor",
]

logger = logging.getLogger(__name__)

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


def classify(
    max_force_dev_eV_A: np.ndarray, trust_lo_eV_A: float, trust_hi_eV_A: float
) -> np.ndarray:
    """Classify frames by the committee's force uncertainty.

    Parameters
    ----------
    max_force_dev_eV_A
        Max per-atom force deviation of each frame (eV/Å), any shape.
    trust_lo_eV_A, trust_hi_eV_A
        Trust window (eV/Å), ``trust_lo_eV_A < trust_hi_eV_A``.

    Returns
    -------
    numpy.ndarray of str
        Same shape: ``"accurate"`` below ``trust_lo``, ``"candidate"`` in
        ``[trust_lo, trust_hi)``, ``"failed"`` at or above ``trust_hi`` and for
        NaN.

    Raises
    ------
    ValueError
        The window is empty or inverted.
    """
    if not trust_lo_eV_A < trust_hi_eV_A:
        raise ValueError(
            f"trust window needs trust_lo < trust_hi, got {trust_lo_eV_A} and {trust_hi_eV_A}"
        )
    values = np.asarray(max_force_dev_eV_A, dtype=float)
    labels = np.full(values.shape, FAILED, dtype="<U9")
    with np.errstate(invalid="ignore"):
        labels[values < trust_hi_eV_A] = CANDIDATE
        labels[values < trust_lo_eV_A] = ACCURATE
    return labels


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
) -> np.ndarray:
    """Greedy farthest point sampling in descriptor space (Euclidean).

    Each pick is the item farthest from everything picked so far and from
    ``existing``.

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
        first item is the one farthest from ``existing``, or a seeded random
        one.

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
    min_distance = np.full(n, np.inf)
    if existing is not None and np.size(existing):
        known = np.asarray(existing, dtype=float)
        if known.ndim != 2 or known.shape[1] != points.shape[1]:
            raise ValueError(f"existing must have shape (m, {points.shape[1]}), got {known.shape}")
        from scipy.spatial.distance import cdist

        min_distance = cdist(points, known).min(axis=1)
    if start_index is not None:
        if not 0 <= start_index < n:
            raise IndexError(f"start_index {start_index} out of range for {n} descriptors")
        current = int(start_index)
    elif np.isfinite(min_distance).any():
        current = int(np.argmax(min_distance))
    else:
        current = int(np.random.default_rng(seed).integers(n))
    picked = [current]
    chosen = np.zeros(n, dtype=bool)
    chosen[current] = True
    while len(picked) < k:
        np.minimum(min_distance, np.linalg.norm(points - points[current], axis=1), out=min_distance)
        masked = np.where(chosen, -np.inf, min_distance)
        current = int(np.argmax(masked))
        picked.append(current)
        chosen[current] = True
    return np.asarray(picked, dtype=int)


def deduplicate(keys: Sequence[str], known_keys: Collection[str]) -> np.ndarray:
    """Mask keeping the first occurrence of each key that is not already known.

    Parameters
    ----------
    keys
        Content keys (:func:`alflow.structures.structure_key`) of the items.
    known_keys
        Keys of structures seen before (labeled or queued).

    Returns
    -------
    numpy.ndarray of bool
        True where the item is kept.
    """
    known = set(known_keys)
    seen: set[str] = set()
    mask = np.zeros(len(keys), dtype=bool)
    for index, key in enumerate(keys):
        if key not in known and key not in seen:
            mask[index] = True
        seen.add(key)
    return mask


def basic_sanity_check(atoms: Atoms, sanity: SanityConfig) -> str | None:
    """Minimal physical checks before a structure is sent to DFT.

    Parameters
    ----------
    atoms
        The structure.
    sanity
        Limits: closest pair distance (Å), number of atoms and, for 3D
        periodic cells, volume per atom (Å³).

    Returns
    -------
    str or None
        Why the structure is rejected, or None if it passes.
    """
    if len(atoms) == 0:
        return "no atoms"
    if not np.all(np.isfinite(atoms.positions)):
        return "non-finite positions"
    if not np.all(np.isfinite(np.asarray(atoms.cell))):
        return "non-finite cell"
    if len(atoms) > sanity.max_atoms:
        return f"{len(atoms)} atoms > max_atoms {sanity.max_atoms}"
    if atoms.pbc.all():
        volume_per_atom = abs(atoms.get_volume()) / len(atoms)
        if not (sanity.min_volume_per_atom_A3 <= volume_per_atom <= sanity.max_volume_per_atom_A3):
            return (
                f"volume {volume_per_atom:.2f} Å³/atom outside "
                f"[{sanity.min_volume_per_atom_A3:g}, {sanity.max_volume_per_atom_A3:g}]"
            )
    if len(atoms) > 1 or atoms.pbc.any():
        from ase.neighborlist import neighbor_list

        distances = neighbor_list("d", atoms, float(sanity.min_distance_A))
        if len(distances) and distances.min() < sanity.min_distance_A:
            return f"atoms {distances.min():.2f} Å apart (min {sanity.min_distance_A:g})"
    return None


@dataclass
class Selection:
    """Outcome of one iteration's selection.

    Attributes
    ----------
    selected
        Indices into the candidate list (the frames passed in), in selection order.
    rejected
        Index → reason, for candidates dropped as duplicates or by the sanity check.
    counts
        ``accurate``, ``candidate``, ``failed`` (classification of all frames),
        ``duplicate`` and ``rejected`` (sanity failures; together they are the
        entries of ``rejected``), ``selected`` and ``over_budget`` (sane,
        new candidates left out by the budget).
    classes
        Classification of every frame (``"accurate"``, ``"candidate"``, ``"failed"``).
    """

    selected: list[int]
    rejected: dict[int, str]
    counts: dict[str, int]
    classes: list[str] = field(default_factory=list)


def select_candidates(
    frames_atoms: Sequence[Atoms],
    max_force_dev_eV_A: np.ndarray,
    keys: Sequence[str],
    *,
    selection: SelectionConfig,
    budget: int,
    known_keys: Collection[str] = (),
    known_descriptors: np.ndarray | None = None,
    sanity_check: Callable[[Atoms], str | None] | None = None,
) -> Selection:
    """Pick the frames to label: trust window, de-duplication, sanity, diversity, budget.

    Parameters
    ----------
    frames_atoms
        Explored frames.
    max_force_dev_eV_A
        Committee max force deviation of each frame (eV/Å).
    keys
        Content key of each frame (:func:`alflow.structures.structure_key`).
    selection
        Trust window, diversity method, sanity limits and per-iteration cap.
    budget
        DFT labels still affordable; the effective budget is
        ``min(budget, selection.max_per_iteration)``.
    known_keys
        Keys of structures already labeled or queued.
    known_descriptors
        Descriptors (m, d) of already-labeled structures, for FPS. They must
        be computed with ``soap_free_descriptor(atoms,
        species=descriptor_species(frames_atoms))`` so their length matches.
    sanity_check
        Returns a reason to reject a structure, or None. Default:
        :func:`basic_sanity_check` with ``selection.sanity``.

    Returns
    -------
    Selection

    Raises
    ------
    ValueError
        Inputs of different lengths, or ``known_descriptors`` of the wrong width.
    """
    n = len(frames_atoms)
    uncertainty = np.asarray(max_force_dev_eV_A, dtype=float).reshape(-1)
    if len(uncertainty) != n or len(keys) != n:
        raise ValueError(
            f"frames_atoms ({n}), max_force_dev_eV_A ({len(uncertainty)}) and keys "
            f"({len(keys)}) must have the same length"
        )
    budget = max(0, min(int(budget), selection.max_per_iteration))
    classes = classify(uncertainty, selection.trust_lo_eV_A, selection.trust_hi_eV_A)
    counts = {
        ACCURATE: int(np.sum(classes == ACCURATE)),
        CANDIDATE: int(np.sum(classes == CANDIDATE)),
        FAILED: int(np.sum(classes == FAILED)),
        "duplicate": 0,
        "rejected": 0,
        "selected": 0,
        "over_budget": 0,
    }
    rejected: dict[int, str] = {}
    candidates = np.flatnonzero(classes == CANDIDATE)

    candidate_keys = [keys[i] for i in candidates]
    keep = deduplicate(candidate_keys, known_keys)
    known = set(known_keys)
    first_with_key: dict[str, int] = {}
    for index, key, kept in zip(candidates, candidate_keys, keep, strict=True):
        if kept:
            first_with_key[key] = int(index)
        elif key in known:
            rejected[int(index)] = "duplicate of a known structure"
        else:
            rejected[int(index)] = f"duplicate of frame {first_with_key[key]}"
    counts["duplicate"] = len(rejected)
    remaining = [int(i) for i in candidates[keep]]

    def default_check(atoms: Atoms) -> str | None:
        return basic_sanity_check(atoms, selection.sanity)

    check = sanity_check if sanity_check is not None else default_check
    sane = []
    for index in remaining:
        try:
            reason = check(frames_atoms[index])
        except StructureError as exc:
            reason = str(exc)
        if reason:
            rejected[index] = f"sanity: {reason}"
            counts["rejected"] += 1
        else:
            sane.append(index)

    selected: list[int] = []
    if sane and budget > 0:
        if selection.diversity == "fps" and budget < len(sane):
            selected = _fps_pick(
                [frames_atoms[i] for i in sane],
                uncertainty[sane],
                budget,
                seed=selection.seed,
                known_descriptors=known_descriptors,
            )
            selected = [sane[i] for i in selected]
        else:
            order = np.argsort(-uncertainty[sane], kind="stable")
            selected = [sane[i] for i in order[:budget]]
    counts["selected"] = len(selected)
    counts["over_budget"] = len(sane) - len(selected)
    logger.info(
        "selection: %d frames (%d accurate, %d candidate, %d failed); %d duplicate, "
        "%d rejected, %d selected of budget %d",
        n,
        counts[ACCURATE],
        counts[CANDIDATE],
        counts[FAILED],
        counts["duplicate"],
        counts["rejected"],
        counts["selected"],
        budget,
    )
    return Selection(
        selected=selected, rejected=rejected, counts=counts, classes=[str(c) for c in classes]
    )


def _fps_pick(
    structures: Sequence[Atoms],
    uncertainty: np.ndarray,
    k: int,
    *,
    seed: int,
    known_descriptors: np.ndarray | None,
) -> list[int]:
    """FPS over structures, starting from the most uncertain one."""
    species = descriptor_species(structures)
    descriptors = np.stack([soap_free_descriptor(a, species=species) for a in structures])
    existing = None
    if known_descriptors is not None and np.size(known_descriptors):
        existing = np.asarray(known_descriptors, dtype=float)
        if existing.ndim != 2 or existing.shape[1] != descriptors.shape[1]:
            raise ValueError(
                f"known_descriptors have shape {existing.shape}, candidates' descriptors have "
                f"{descriptors.shape[1]} columns: compute them with soap_free_descriptor(atoms, "
                f"species={species})"
            )
    start = int(np.argmax(uncertainty)) if len(uncertainty) else None
    if start is not None and math.isnan(uncertainty[start]):
        start = None
    return [
        int(i)
        for i in farthest_point_sampling(
            descriptors, k, seed=seed, existing=existing, start_index=start
        )
    ]
