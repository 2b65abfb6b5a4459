"""Which explored frames get a DFT label (no database, no FireWorks).

- :mod:`alflow.selection.window`: the trust window (classify, score, re-score);
- :mod:`alflow.selection.diversity`: descriptors and farthest point sampling;
- :mod:`alflow.selection.candidates`: :func:`select_candidates`, one
  iteration's choice within its budget (:func:`iteration_budget`), and
  :func:`new_and_sane`, the de-duplication and sanity screen of every strategy.

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

from alflow.selection.candidates import (
    FpsVariant,
    Screening,
    Selection,
    deduplicate,
    iteration_budget,
    new_and_sane,
    select_candidates,
)
from alflow.selection.diversity import (
    descriptor_species,
    farthest_point_sampling,
    farthest_point_sampling_atoms,
    mace_structure_descriptors,
    soap_free_descriptor,
)
from alflow.selection.window import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    Rescore,
    classify,
    rescore_pending,
    score_frames,
)

__all__ = [
    "ACCURATE",
    "CANDIDATE",
    "FAILED",
    "FpsVariant",
    "Rescore",
    "Screening",
    "Selection",
    "classify",
    "deduplicate",
    "descriptor_species",
    "farthest_point_sampling",
    "farthest_point_sampling_atoms",
    "iteration_budget",
    "mace_structure_descriptors",
    "new_and_sane",
    "rescore_pending",
    "score_frames",
    "select_candidates",
    "soap_free_descriptor",
]
