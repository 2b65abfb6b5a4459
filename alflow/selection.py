"""Which explored frames get a DFT label: pure functions over arrays.

The selection of one iteration runs, in order:

1. :func:`classify` every frame by its score, the committee's max force
   deviation (DP-GEN trust window) or its relative form
   (:func:`alflow.calibration.relative_deviation`): below ``lo`` *accurate*,
   in ``[lo, hi)`` *candidate*, at or above ``hi`` (or NaN) *failed*. The
   window is the configured one or the calibrated one
   (:func:`alflow.calibration.calibrated_thresholds`).
2. :func:`deduplicate` candidates against structures already known and
   against each other (content keys from :func:`alflow.structures.structure_key`).
3. A sanity check rejects unphysical candidates (overlapping atoms, NaN, ...).
4. Audit: a few random frames of the accurate class (``audit_per_iteration``,
   at most half the budget) are labeled too, so the calibration sees errors
   below the window.
5. Diversity: :func:`farthest_point_sampling` on structure descriptors (mean
   MACE node features from :func:`mace_structure_descriptors`, or
   :func:`soap_free_descriptor`), starting from the most uncertain candidate
   and counting distances to already-labeled structures, or simply the most
   uncertain ones, up to the rest of the budget. With per-atom descriptors,
   :func:`farthest_point_sampling_atoms` measures a frame by its most novel
   atom instead.

:func:`rescore_pending` re-scores frames queued for DFT with a newer
committee and says which became accurate. Nothing here touches the database
or FireWorks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from scipy.spatial.distance import cdist

from alflow.config import SelectionConfig
from alflow.errors import StructureError
from alflow.labeling.sanity import sanity_reason

__all__ = [
    "ACCURATE",
    "CANDIDATE",
    "FAILED",
    "Rescore",
    "Selection",
    "classify",
    "deduplicate",
    "descriptor_species",
    "farthest_point_sampling",
    "farthest_point_sampling_atoms",
    "mace_structure_descriptors",
    "rescore_pending",
    "score_frames",
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
    audit
        Indices of accurate frames picked at random for labeling (also at
        the end of ``selected``); ``counts["audit"]`` is their number.
    window
        The (lo, hi) window used.
    """

    selected: list[int]
    rejected: dict[int, str]
    counts: dict[str, int]
    classes: list[str] = field(default_factory=list)
    audit: list[int] = field(default_factory=list)
    window: tuple[float, float] | None = None


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
    window: tuple[float, float] | None = None,
    descriptors: np.ndarray | None = None,
    audit_per_iteration: int = 0,
    seed: int | None = None,
    fps_weighting: str = "none",
    fps_top_factor: float | None = None,
    atom_descriptors: Sequence[np.ndarray] | None = None,
    known_atom_descriptors: np.ndarray | None = None,
) -> Selection:
    """Pick the frames to label: trust window, de-duplication, sanity, audit, diversity, budget.

    Parameters
    ----------
    frames_atoms
        Explored frames.
    max_force_dev_eV_A
        Selection score of each frame: the committee max force deviation
        (eV/Å), or its relative form when ``window`` is given in those units.
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
        Descriptors (m, d) of already-labeled structures, for FPS. Without
        ``descriptors`` they must be computed with ``soap_free_descriptor(atoms,
        species=descriptor_species(frames_atoms))`` so their length matches;
        with ``descriptors``, by the same method.
    sanity_check
        Returns a reason to reject a structure, or None. Default:
        :func:`alflow.labeling.sanity.sanity_reason` with ``selection.sanity``.
    window
        (lo, hi) window in the units of the score; default
        ``(selection.trust_lo_eV_A, selection.trust_hi_eV_A)``.
    descriptors
        Descriptors (n, d) of every frame for FPS (e.g.
        :func:`mace_structure_descriptors`); default: :func:`soap_free_descriptor`.
    audit_per_iteration
        Accurate frames to pick at random for labeling (at most half the
        budget); they pass the same de-duplication and sanity checks.
    seed
        Seed of the audit pick and of FPS ties; default ``selection.seed``.
    fps_weighting
        ``"none"``: plain FPS; ``"score"``: each FPS pick maximises
        ``score × distance`` (uncertainty-weighted FPS).
    fps_top_factor
        If given, FPS runs only over the ``ceil(factor × budget)`` candidates
        with the highest score (FPS restricted to the most uncertain ones).
    atom_descriptors
        Per-atom descriptors of every frame (one (atoms, d) array each, e.g.
        :func:`mace_atom_descriptors`): FPS then measures a frame by its most
        novel atom (:func:`farthest_point_sampling_atoms`) and ``descriptors``
        are not used. Weighted FPS is not available in this form.
    known_atom_descriptors
        Per-atom descriptors (m, d) of every atom of the already-labeled
        structures, stacked, for the per-atom form.

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
    if descriptors is not None and len(descriptors) != n:
        raise ValueError(f"descriptors ({len(descriptors)}) and frames ({n}) differ in length")
    if atom_descriptors is not None and len(atom_descriptors) != n:
        raise ValueError(
            f"atom_descriptors ({len(atom_descriptors)}) and frames ({n}) differ in length"
        )
    if atom_descriptors is not None and fps_weighting != "none":
        raise ValueError("weighted FPS needs structure descriptors, not atom_descriptors")
    if fps_weighting not in ("none", "score"):
        raise ValueError(f"fps_weighting must be 'none' or 'score', got {fps_weighting!r}")
    budget = max(0, min(int(budget), selection.max_per_iteration))
    lo, hi = window if window is not None else (selection.trust_lo_eV_A, selection.trust_hi_eV_A)
    seed = selection.seed if seed is None else int(seed)
    classes = classify(uncertainty, lo, hi)
    counts = {
        ACCURATE: int(np.sum(classes == ACCURATE)),
        CANDIDATE: int(np.sum(classes == CANDIDATE)),
        FAILED: int(np.sum(classes == FAILED)),
        "duplicate": 0,
        "rejected": 0,
        "selected": 0,
        "audit": 0,
        "over_budget": 0,
    }
    rejected: dict[int, str] = {}

    def default_check(atoms: Atoms) -> str | None:
        return sanity_reason(atoms, selection.sanity)

    check = sanity_check if sanity_check is not None else default_check
    candidates = np.flatnonzero(classes == CANDIDATE)
    sane = _new_and_sane(candidates, frames_atoms, keys, known_keys, check, rejected, counts)

    audit: list[int] = []
    n_audit = min(int(audit_per_iteration), budget // 2)
    if n_audit > 0:
        pool = np.flatnonzero(classes == ACCURATE)
        order = np.random.default_rng(seed).permutation(pool)
        taken = set(known_keys) | {keys[i] for i in sane}
        for index in order:
            if len(audit) == n_audit:
                break
            index = int(index)
            if keys[index] in taken:
                continue
            try:
                reason = check(frames_atoms[index])
            except StructureError as exc:
                reason = str(exc)
            if not reason:
                audit.append(index)
                taken.add(keys[index])
    candidate_budget = budget - len(audit)

    selected: list[int] = []
    if sane and candidate_budget > 0:
        if selection.diversity == "fps" and candidate_budget < len(sane):
            pool_for_fps = sane
            if fps_top_factor is not None:
                n_top = max(candidate_budget, math.ceil(fps_top_factor * candidate_budget))
                top = np.argsort(-uncertainty[sane], kind="stable")[:n_top]
                pool_for_fps = [sane[i] for i in sorted(top)]
            picked = _fps_pick(
                [frames_atoms[i] for i in pool_for_fps],
                uncertainty[pool_for_fps],
                candidate_budget,
                seed=seed,
                known_descriptors=known_descriptors,
                descriptors=None if descriptors is None else np.asarray(descriptors)[pool_for_fps],
                weighted=fps_weighting == "score",
                atom_descriptors=None
                if atom_descriptors is None
                else [atom_descriptors[i] for i in pool_for_fps],
                known_atom_descriptors=known_atom_descriptors,
            )
            selected = [pool_for_fps[i] for i in picked]
        else:
            order = np.argsort(-uncertainty[sane], kind="stable")
            selected = [sane[i] for i in order[:candidate_budget]]
    counts["over_budget"] = len(sane) - len(selected)
    selected += audit
    counts["selected"] = len(selected)
    counts["audit"] = len(audit)
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
        selected=selected,
        rejected=rejected,
        counts=counts,
        classes=[str(c) for c in classes],
        audit=audit,
        window=(float(lo), float(hi)),
    )


def _new_and_sane(
    indices: np.ndarray,
    frames_atoms: Sequence[Atoms],
    keys: Sequence[str],
    known_keys: Collection[str],
    check: Callable[[Atoms], str | None],
    rejected: dict[int, str],
    counts: dict[str, int],
) -> list[int]:
    """Indices that are neither duplicates nor insane; the others go to ``rejected``."""
    index_keys = [keys[i] for i in indices]
    keep = deduplicate(index_keys, known_keys)
    known = set(known_keys)
    first_with_key: dict[str, int] = {}
    for index, key, kept in zip(indices, index_keys, keep, strict=True):
        if kept:
            first_with_key[key] = int(index)
        elif key in known:
            rejected[int(index)] = "duplicate of a known structure"
        else:
            rejected[int(index)] = f"duplicate of frame {first_with_key[key]}"
    counts["duplicate"] = len(rejected)
    sane = []
    for index in (int(i) for i in indices[keep]):
        try:
            reason = check(frames_atoms[index])
        except StructureError as exc:
            reason = str(exc)
        if reason:
            rejected[index] = f"sanity: {reason}"
            counts["rejected"] += 1
        else:
            sane.append(index)
    return sane


def _fps_pick(
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
        A :class:`alflow.committee.CommitteeCalculator` (anything with
        ``models`` and ``_graph(atoms)``); other calculators (e.g.
        :class:`alflow.committee.FakeCommittee`) give None.
    frames_atoms
        The structures.

    Returns
    -------
    numpy.ndarray or None
        Shape (n, d): the invariant (L = 0) channels of every interaction
        layer, averaged over atoms; None when the calculator has no MACE
        models or the evaluation fails (the caller falls back to
        :func:`soap_free_descriptor`).
    """
    models = getattr(calc, "models", None)
    graph = getattr(calc, "_graph", None)
    if not models or graph is None:
        return None
    if len(frames_atoms) == 0:
        return np.zeros((0, 0))
    try:
        import torch

        model = models[0]
        irreps_out = model.products[0].linear.irreps_out
        l_max = int(irreps_out.lmax)
        n_invariant = int(irreps_out.dim) // (l_max + 1) ** 2
        n_layers = int(model.num_interactions)
        rows = []
        for atoms in frames_atoms:
            batch = graph(atoms)
            with torch.no_grad():
                feats = model(dict(batch), training=False, compute_force=False)["node_feats"]
            block = (l_max + 1) ** 2 * n_invariant
            parts = [feats[:, i * block : i * block + n_invariant] for i in range(n_layers)]
            rows.append(torch.cat(parts, dim=-1).mean(dim=0).detach().cpu().double().numpy())
        return np.stack(rows)
    except Exception as exc:  # any failure of the optional path falls back to RDF
        logger.warning("MACE descriptors unavailable (%s); falling back to RDF descriptors", exc)
        return None


def score_frames(
    max_force_dev_eV_A: np.ndarray,
    mean_forces_eV_A: Sequence[np.ndarray] | None,
    selection: SelectionConfig,
) -> np.ndarray:
    """Selection score of frames in the form ``selection.deviation`` asks for.

    Parameters
    ----------
    max_force_dev_eV_A
        Max per-atom committee force deviation (eV/Å), shape (n,).
    mean_forces_eV_A
        Committee-mean forces (N_k, 3) of each frame; needed for the relative form.
    selection
        ``deviation`` and ``relative_eps_eV_A``.

    Returns
    -------
    numpy.ndarray
        The deviation itself (eV/Å) or its relative form (dimensionless).
    """
    deviation = np.asarray(max_force_dev_eV_A, dtype=float).reshape(-1)
    if selection.deviation == "absolute":
        return deviation
    if mean_forces_eV_A is None or len(mean_forces_eV_A) != len(deviation):
        raise ValueError("the relative deviation needs the committee-mean forces of every frame")
    from alflow.calibration import relative_deviation

    norms = np.array(
        [
            float(np.linalg.norm(np.asarray(f, dtype=float).reshape(-1, 3), axis=1).mean())
            if np.size(f)
            else 0.0
            for f in mean_forces_eV_A
        ]
    )
    return relative_deviation(deviation, norms, selection.relative_eps_eV_A)


@dataclass
class Rescore:
    """Outcome of :func:`rescore_pending`.

    Attributes
    ----------
    max_force_dev_eV_A
        New committee max force deviation of each frame (eV/Å).
    score
        New selection score (equal to the deviation in the absolute form).
    drop
        True where the frame is now accurate (score below ``lo``): its DFT
        label is no longer worth paying for.
    """

    max_force_dev_eV_A: np.ndarray
    score: np.ndarray
    drop: np.ndarray


def rescore_pending(
    frames_atoms: Sequence[Atoms], calc: object, lo: float, selection: SelectionConfig
) -> Rescore:
    """Re-score frames queued for DFT with a newer committee; say which to drop.

    Parameters
    ----------
    frames_atoms
        Frames selected earlier and not yet labeled.
    calc
        ASE committee calculator returning ``forces_comm`` (M, N, 3) eV/Å
        (:class:`alflow.committee.CommitteeCalculator`,
        :class:`alflow.committee.FakeCommittee`).
    lo
        Lower bound of the current window, in the units of the score.
    selection
        ``deviation`` and ``relative_eps_eV_A``.

    Returns
    -------
    Rescore
        A frame the committee cannot evaluate (NaN) is kept.
    """
    from alflow.committee.uncertainty import max_force_deviation

    n = len(frames_atoms)
    deviation = np.full(n, np.nan)
    mean_forces: list[np.ndarray] = []
    for index, atoms in enumerate(frames_atoms):
        probe = atoms.copy()
        probe.calc = calc
        forces = probe.get_forces()
        deviation[index] = max_force_deviation(np.asarray(probe.calc.results["forces_comm"]))
        mean_forces.append(np.asarray(forces))
    score = score_frames(deviation, mean_forces, selection)
    with np.errstate(invalid="ignore"):
        drop = np.asarray(score < lo, dtype=bool)
    return Rescore(max_force_dev_eV_A=deviation, score=score, drop=drop)
