"""One iteration's choice of frames for DFT within its budget: :func:`select_candidates`.

Classify (:mod:`alflow.selection.window`), drop duplicates and insane frames,
audit a few accurate ones, pick the rest for diversity
(:mod:`alflow.selection.diversity`) up to the budget.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from alflow.config import SelectionConfig
from alflow.errors import StructureError
from alflow.labeling.sanity import sanity_reason
from alflow.selection.diversity import fps_pick
from alflow.selection.window import ACCURATE, CANDIDATE, FAILED, classify

__all__ = [
    "Selection",
    "deduplicate",
    "select_candidates",
]

logger = logging.getLogger(__name__)


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
            picked = fps_pick(
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
