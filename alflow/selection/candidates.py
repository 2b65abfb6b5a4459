"""One iteration's choice of frames for DFT within its budget: :func:`select_candidates`.

Classify (:mod:`alflow.selection.window`), drop duplicates and insane frames
(:func:`new_and_sane`), audit a few accurate ones, pick the rest for
diversity (:mod:`alflow.selection.diversity`) up to the budget
(:func:`iteration_budget`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np
from ase import Atoms

from alflow.config import SelectionConfig
from alflow.errors import StructureError
from alflow.labeling.sanity import sanity_reason
from alflow.selection.diversity import fps_pick
from alflow.selection.window import ACCURATE, CANDIDATE, FAILED, classify

__all__ = [
    "FpsVariant",
    "Screening",
    "Selection",
    "deduplicate",
    "iteration_budget",
    "new_and_sane",
    "select_candidates",
]

logger = logging.getLogger(__name__)

#: A sanity check: why a structure must not be labeled, or None.
SanityCheck = Callable[[Atoms], str | None]


def iteration_budget(selection: SelectionConfig, labels_left: int) -> int:
    """DFT labels one iteration may spend: its cap, within what is left of the campaign's.

    The one place the per-iteration cap (``selection.max_per_iteration``) is applied.

    Parameters
    ----------
    selection
        The selection settings (``max_per_iteration``).
    labels_left
        DFT labels still affordable.

    Returns
    -------
    int
        ``max(0, min(labels_left, selection.max_per_iteration))``.
    """
    return max(0, min(int(labels_left), selection.max_per_iteration))


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


class Screening(NamedTuple):
    """Outcome of :func:`new_and_sane`.

    Attributes
    ----------
    sane
        Indices that are new and pass the sanity check, in the order given.
    rejected
        Index → reason (``duplicate of ...`` or ``sanity: ...``) of the others.
    duplicates
        How many of ``rejected`` are duplicates.
    """

    sane: list[int]
    rejected: dict[int, str]
    duplicates: int


def new_and_sane(
    indices: Sequence[int] | np.ndarray,
    frames_atoms: Sequence[Atoms],
    keys: Sequence[str],
    known_keys: Collection[str],
    check: SanityCheck,
    *,
    limit: int | None = None,
) -> Screening:
    """The frames at ``indices`` that are neither duplicates nor insane.

    Parameters
    ----------
    indices
        Indices into ``frames_atoms`` and ``keys`` to screen, in order.
    frames_atoms, keys
        Every frame and its content key.
    known_keys
        Keys of structures already known (labeled or queued): their frames
        are duplicates, and so is every later frame with the key of an earlier one.
    check
        Returns a reason to reject a structure, or None; a
        :class:`~alflow.errors.StructureError` it raises is a reason too.
    limit
        Stop once this many frames are sane (the rest is not checked).

    Returns
    -------
    Screening
    """
    indices = np.asarray(indices, dtype=int).reshape(-1)
    index_keys = [keys[i] for i in indices]
    keep = deduplicate(index_keys, known_keys)
    known = set(known_keys)
    rejected: dict[int, str] = {}
    first_with_key: dict[str, int] = {}
    for index, key, kept in zip(indices, index_keys, keep, strict=True):
        if kept:
            first_with_key[key] = int(index)
        elif key in known:
            rejected[int(index)] = "duplicate of a known structure"
        else:
            rejected[int(index)] = f"duplicate of frame {first_with_key[key]}"
    duplicates = len(rejected)
    sane: list[int] = []
    for index in (int(i) for i in indices[keep]):
        if limit is not None and len(sane) >= limit:
            break
        try:
            reason = check(frames_atoms[index])
        except StructureError as exc:
            reason = str(exc)
        if reason:
            rejected[index] = f"sanity: {reason}"
        else:
            sane.append(index)
    return Screening(sane, rejected, duplicates)


@dataclass(frozen=True)
class FpsVariant:
    """Variants of the FPS pick that the benchmarks compare (the loop uses plain FPS).

    Attributes
    ----------
    weighting
        ``"none"``: plain FPS; ``"score"``: each FPS pick maximises
        ``score × distance`` (uncertainty-weighted FPS).
    top_factor
        If given, FPS runs only over the ``ceil(factor × budget)`` candidates
        with the highest score (FPS restricted to the most uncertain ones).
    atom_descriptors
        Per-atom descriptors of every frame (one (atoms, d) array each, e.g.
        :func:`mace_atom_descriptors`): FPS then measures a frame by its most
        novel atom (:func:`farthest_point_sampling_atoms`) and structure
        descriptors are not used. Weighted FPS is not available in this form.
    known_atom_descriptors
        Per-atom descriptors (m, d) of every atom of the already-labeled
        structures, stacked, for the per-atom form.

    Raises
    ------
    ValueError
        An unknown ``weighting``, or weighting with ``atom_descriptors``.
    """

    weighting: str = "none"
    top_factor: float | None = None
    atom_descriptors: Sequence[np.ndarray] | None = None
    known_atom_descriptors: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.atom_descriptors is not None and self.weighting != "none":
            raise ValueError("weighted FPS needs structure descriptors, not atom_descriptors")
        if self.weighting not in ("none", "score"):
            raise ValueError(f"fps_weighting must be 'none' or 'score', got {self.weighting!r}")


#: Plain FPS on structure descriptors (what the loop uses).
PLAIN_FPS = FpsVariant()


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
    budget
        The budget spent against (:func:`iteration_budget`).
    """

    selected: list[int]
    rejected: dict[int, str]
    counts: dict[str, int]
    classes: list[str] = field(default_factory=list)
    audit: list[int] = field(default_factory=list)
    window: tuple[float, float] | None = None
    budget: int = 0


def select_candidates(
    frames_atoms: Sequence[Atoms],
    max_force_dev_eV_A: np.ndarray,
    keys: Sequence[str],
    *,
    selection: SelectionConfig,
    budget: int,
    known_keys: Collection[str] = (),
    known_descriptors: np.ndarray | None = None,
    sanity_check: SanityCheck | None = None,
    window: tuple[float, float] | None = None,
    descriptors: np.ndarray | None = None,
    audit_per_iteration: int = 0,
    seed: int | None = None,
    fps: FpsVariant = PLAIN_FPS,
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
        DFT labels still affordable; the iteration spends at most
        :func:`iteration_budget` of them.
    known_keys
        Keys of structures already labeled or queued.
    known_descriptors
        Descriptors (m, d) of already-labeled structures, for FPS, computed like
        ``descriptors`` (or their default, with ``descriptor_species(frames_atoms)``).
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
    fps
        The benchmarks' variants of FPS (:class:`FpsVariant`); default plain FPS.

    Returns
    -------
    Selection

    Raises
    ------
    ValueError
        Inputs of different lengths, or ``known_descriptors`` of the wrong width.
    """
    uncertainty = _checked_scores(frames_atoms, max_force_dev_eV_A, keys, descriptors, fps)
    budget = iteration_budget(selection, budget)
    lo, hi = window if window is not None else (selection.trust_lo_eV_A, selection.trust_hi_eV_A)
    seed = selection.seed if seed is None else int(seed)
    classes = classify(uncertainty, lo, hi)
    check = sanity_check or partial(sanity_reason, sanity=selection.sanity)
    candidates = new_and_sane(
        np.flatnonzero(classes == CANDIDATE), frames_atoms, keys, known_keys, check
    )
    taken = {*known_keys, *(keys[i] for i in candidates.sane)}
    n_audit = min(int(audit_per_iteration), budget // 2)
    audit = _audit_pick(
        np.flatnonzero(classes == ACCURATE), n_audit, frames_atoms, keys, taken, check, seed
    )
    picked = _diverse_pick(
        candidates.sane,
        budget - len(audit),
        frames_atoms,
        uncertainty,
        selection=selection,
        seed=seed,
        descriptors=descriptors,
        known_descriptors=known_descriptors,
        fps=fps,
    )
    return Selection(
        selected=picked + audit,
        rejected=candidates.rejected,
        counts=_logged_counts(classes, candidates, picked, audit, budget),
        classes=[str(c) for c in classes],
        audit=audit,
        window=(float(lo), float(hi)),
        budget=budget,
    )


def _checked_scores(
    frames_atoms: Sequence[Atoms],
    max_force_dev_eV_A: np.ndarray,
    keys: Sequence[str],
    descriptors: np.ndarray | None,
    fps: FpsVariant,
) -> np.ndarray:
    """The scores as a flat float array, once every per-frame input has one entry per frame."""
    n = len(frames_atoms)
    uncertainty = np.asarray(max_force_dev_eV_A, dtype=float).reshape(-1)
    if len(uncertainty) != n or len(keys) != n:
        raise ValueError(
            f"frames_atoms ({n}), max_force_dev_eV_A ({len(uncertainty)}) and keys "
            f"({len(keys)}) must have the same length"
        )
    if descriptors is not None and len(descriptors) != n:
        raise ValueError(f"descriptors ({len(descriptors)}) and frames ({n}) differ in length")
    if fps.atom_descriptors is not None and len(fps.atom_descriptors) != n:
        raise ValueError(
            f"atom_descriptors ({len(fps.atom_descriptors)}) and frames ({n}) differ in length"
        )
    return uncertainty


def _audit_pick(
    accurate: np.ndarray,
    n_audit: int,
    frames_atoms: Sequence[Atoms],
    keys: Sequence[str],
    taken: Collection[str],
    check: SanityCheck,
    seed: int,
) -> list[int]:
    """Up to ``n_audit`` of the ``accurate`` frames, at random, new (not ``taken``) and sane."""
    if n_audit <= 0:
        return []
    order = np.random.default_rng(seed).permutation(accurate)
    return new_and_sane(order, frames_atoms, keys, taken, check, limit=n_audit).sane


def _diverse_pick(
    sane: list[int],
    n_pick: int,
    frames_atoms: Sequence[Atoms],
    uncertainty: np.ndarray,
    *,
    selection: SelectionConfig,
    seed: int,
    descriptors: np.ndarray | None,
    known_descriptors: np.ndarray | None,
    fps: FpsVariant,
) -> list[int]:
    """Up to ``n_pick`` of the ``sane`` candidates: by FPS, or the most uncertain ones."""
    if not sane or n_pick <= 0:
        return []
    if selection.diversity != "fps" or n_pick >= len(sane):
        order = np.argsort(-uncertainty[sane], kind="stable")
        return [sane[i] for i in order[:n_pick]]
    pool = sane
    if fps.top_factor is not None:
        n_top = max(n_pick, math.ceil(fps.top_factor * n_pick))
        top = np.argsort(-uncertainty[sane], kind="stable")[:n_top]
        pool = [sane[i] for i in sorted(top)]
    picked = fps_pick(
        [frames_atoms[i] for i in pool],
        uncertainty[pool],
        n_pick,
        seed=seed,
        known_descriptors=known_descriptors,
        descriptors=None if descriptors is None else np.asarray(descriptors)[pool],
        weighted=fps.weighting == "score",
        atom_descriptors=None
        if fps.atom_descriptors is None
        else [fps.atom_descriptors[i] for i in pool],
        known_atom_descriptors=fps.known_atom_descriptors,
    )
    return [pool[i] for i in picked]


def _logged_counts(
    classes: np.ndarray, candidates: Screening, picked: list[int], audit: list[int], budget: int
) -> dict[str, int]:
    """The ``counts`` of a :class:`Selection`, also logged."""
    n_rejected = len(candidates.rejected) - candidates.duplicates
    counts = {
        ACCURATE: int(np.sum(classes == ACCURATE)),
        CANDIDATE: int(np.sum(classes == CANDIDATE)),
        FAILED: int(np.sum(classes == FAILED)),
        "duplicate": candidates.duplicates,
        "rejected": n_rejected,
        "selected": len(picked) + len(audit),
        "audit": len(audit),
        "over_budget": len(candidates.sane) - len(picked),
    }
    logger.info(
        "selection: %d frames (%d accurate, %d candidate, %d failed); %d duplicate, "
        "%d rejected, %d selected of budget %d",
        len(classes),
        *(counts[c] for c in (ACCURATE, CANDIDATE, FAILED, "duplicate", "rejected", "selected")),
        budget,
    )
    return counts
