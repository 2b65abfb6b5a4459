"""The trust window: classify frames by the committee's uncertainty, score them, re-score queued ones.

Functions over arrays (:func:`rescore_pending` evaluates a committee calculator); the
window itself comes from the configuration or :func:`alflow.calibration.calibrated_thresholds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from alflow.calibration import relative_deviation
from alflow.committee.uncertainty import max_force_deviation
from alflow.config import SelectionConfig

__all__ = [
    "ACCURATE",
    "CANDIDATE",
    "FAILED",
    "Rescore",
    "classify",
    "rescore_pending",
    "score_frames",
]

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
        :class:`alflow.testing.FakeCommittee`).
    lo
        Lower bound of the current window, in the units of the score.
    selection
        ``deviation`` and ``relative_eps_eV_A``.

    Returns
    -------
    Rescore
        A frame the committee cannot evaluate (NaN) is kept.
    """
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
