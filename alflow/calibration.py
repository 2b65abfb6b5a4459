"""Self-calibrating trust window: committee deviation → true force error.

Every label a campaign pays for tells how the committee's disagreement on a
frame relates to the committee's real error on it. This module fits that
relation and turns a force-error target (eV/Å) into a trust window.

Model
-----
For a labeled frame, the *score* ``s`` is the selection score the committee
gave it when it was selected (the max per-atom force deviation in eV/Å, or its
relative form), and the *true error* ``e`` is the largest per-atom force error
of the committee mean against the label,
``e = max_i |F_committee,i - F_label,i|`` (eV/Å): the same max-over-atoms
statistic as the score (:func:`frame_force_error_eV_A`). The fit is a power
law in log space,

``ln e = ln a + b ln s + ε``,   ε ~ N(0, σ²),

by ordinary least squares (``b > 0`` required). The calibrated lower bound of
the window is the score at which a frame's error stays below the target with
probability ``q`` (``calibration_confidence``):

``s_lo = exp((ln target - ln a - σ z_q) / b)``,

clamped to ``[lo_fixed / f, lo_fixed × f]``; ``s_hi = calibrated_hi_factor ×
s_lo``. With too few points, ``b ≤ 0`` or a Spearman rank correlation below
``calibration_min_spearman`` the fixed window is used and the reason recorded.

:func:`plot_calibration` draws the per-iteration figure from the iteration
documents (see ``docs/selection.md``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alflow.config import SelectionConfig

__all__ = [
    "CalibrationFit",
    "Thresholds",
    "calibrated_thresholds",
    "fit_calibration",
    "frame_force_error_eV_A",
    "plot_calibration",
    "relative_deviation",
    "spearman",
]

logger = logging.getLogger(__name__)

#: Scores and errors are floored here before taking logarithms (eV/Å or relative).
_FLOOR = 1e-6


def frame_force_error_eV_A(
    predicted_forces_eV_A: np.ndarray, reference_forces_eV_A: np.ndarray
) -> float:
    """Largest per-atom force error of a frame (eV/Å).

    Parameters
    ----------
    predicted_forces_eV_A, reference_forces_eV_A
        Shape (N, 3).

    Returns
    -------
    float
        ``max_i |F_pred,i - F_ref,i|``; 0.0 for a frame without atoms.
    """
    predicted = np.asarray(predicted_forces_eV_A, dtype=float).reshape(-1, 3)
    reference = np.asarray(reference_forces_eV_A, dtype=float).reshape(-1, 3)
    if predicted.shape != reference.shape:
        raise ValueError(f"force arrays differ in shape: {predicted.shape} vs {reference.shape}")
    if predicted.size == 0:
        return 0.0
    return float(np.linalg.norm(predicted - reference, axis=1).max())


def relative_deviation(
    max_force_dev_eV_A: np.ndarray | float,
    mean_force_norm_eV_A: np.ndarray | float,
    eps_eV_A: float,
) -> np.ndarray:
    """Relative selection score: ``max deviation / (mean per-atom |F| + eps)`` (dimensionless).

    Parameters
    ----------
    max_force_dev_eV_A
        Max per-atom committee force deviation of each frame (eV/Å).
    mean_force_norm_eV_A
        Mean over atoms of ``|F_i|`` of the committee-mean forces of each frame (eV/Å).
    eps_eV_A
        Added to the denominator (eV/Å, > 0), so frames near equilibrium are not
        all flagged.
    """
    if eps_eV_A <= 0:
        raise ValueError(f"eps_eV_A must be positive, got {eps_eV_A}")
    deviation = np.asarray(max_force_dev_eV_A, dtype=float)
    return deviation / (np.asarray(mean_force_norm_eV_A, dtype=float) + eps_eV_A)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman rank correlation of finite pairs; None with fewer than 3 or a constant side."""
    a = np.asarray(x, dtype=float).reshape(-1)
    b = np.asarray(y, dtype=float).reshape(-1)
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@dataclass(frozen=True)
class CalibrationFit:
    """Power law ``error = a · score^b`` with log-normal scatter.

    Attributes
    ----------
    n_points
        Frames used.
    spearman
        Rank correlation of score and error (None if undefined).
    log_prefactor
        ``ln a`` (a in eV/Å at score 1).
    exponent
        ``b``.
    residual_std
        ``σ``: standard deviation of the residuals of ``ln error``.
    """

    n_points: int
    spearman: float | None
    log_prefactor: float
    exponent: float
    residual_std: float

    def predict_error_eV_A(self, score: np.ndarray | float, confidence: float = 0.5) -> np.ndarray:
        """Error (eV/Å) not exceeded with probability ``confidence`` at ``score``."""
        from scipy.stats import norm

        s = np.maximum(np.asarray(score, dtype=float), _FLOOR)
        z = float(norm.ppf(confidence))
        return np.exp(self.log_prefactor + self.exponent * np.log(s) + self.residual_std * z)

    def score_at_error(self, error_eV_A: float, confidence: float = 0.5) -> float:
        """Score at which the error reaches ``error_eV_A`` with probability ``1 - confidence``.

        Below it, a frame's error is below ``error_eV_A`` with at least that
        probability (under the fitted model).
        """
        from scipy.stats import norm

        if self.exponent <= 0:
            raise ValueError("the fit is not increasing (exponent <= 0)")
        z = float(norm.ppf(confidence))
        log_score = (
            math.log(max(error_eV_A, _FLOOR)) - self.log_prefactor - self.residual_std * z
        ) / self.exponent
        return float(math.exp(log_score))

    def as_doc(self) -> dict[str, Any]:
        """JSON/BSON-ready record."""
        return {
            "n_points": self.n_points,
            "spearman": self.spearman,
            "prefactor_eV_A": math.exp(self.log_prefactor),
            "exponent": self.exponent,
            "log_residual_std": self.residual_std,
            "model": "ln(error_eV_A) = ln(prefactor_eV_A) + exponent * ln(score) + N(0, std²)",
        }


def fit_calibration(
    score: Sequence[float] | np.ndarray, error_eV_A: Sequence[float] | np.ndarray
) -> CalibrationFit:
    """Least-squares power law of true error on score (in log space).

    Parameters
    ----------
    score
        Selection score of each labeled frame (eV/Å or relative).
    error_eV_A
        True per-frame error (:func:`frame_force_error_eV_A`), eV/Å.

    Returns
    -------
    CalibrationFit

    Raises
    ------
    ValueError
        Fewer than 3 finite pairs, or all scores equal.
    """
    s = np.asarray(score, dtype=float).reshape(-1)
    e = np.asarray(error_eV_A, dtype=float).reshape(-1)
    if s.shape != e.shape:
        raise ValueError(f"score ({s.size}) and error_eV_A ({e.size}) differ in length")
    finite = np.isfinite(s) & np.isfinite(e)
    s, e = s[finite], e[finite]
    if len(s) < 3:
        raise ValueError(f"need at least 3 finite (score, error) pairs, got {len(s)}")
    x = np.log(np.maximum(s, _FLOOR))
    y = np.log(np.maximum(e, _FLOOR))
    if np.ptp(x) == 0:
        raise ValueError("all scores are equal: no relation can be fitted")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    dof = max(len(x) - 2, 1)
    sigma = float(np.sqrt(np.sum(residual**2) / dof))
    return CalibrationFit(
        n_points=len(s),
        spearman=spearman(s, e),
        log_prefactor=float(intercept),
        exponent=float(slope),
        residual_std=sigma,
    )


@dataclass(frozen=True)
class Thresholds:
    """The trust window used by one iteration.

    Attributes
    ----------
    lo, hi
        Window bounds in the units of the score (eV/Å, or dimensionless in
        the relative form).
    source
        ``"calibrated"`` or ``"fixed"``.
    reason
        Why (e.g. ``"12 points < calibration_min_points 16"``).
    deviation
        ``"absolute"`` or ``"relative"``.
    calibration
        The fit, when one was made (also when it was rejected).
    target_force_error_eV_A
        The target the window was calibrated for.
    """

    lo: float
    hi: float
    source: str
    reason: str
    deviation: str = "absolute"
    calibration: CalibrationFit | None = None
    target_force_error_eV_A: float | None = None

    def as_doc(self) -> dict[str, Any]:
        """JSON/BSON-ready record for the iteration document."""
        return {
            "lo": self.lo,
            "hi": self.hi,
            "source": self.source,
            "reason": self.reason,
            "deviation": self.deviation,
            "target_force_error_eV_A": self.target_force_error_eV_A,
            "calibration": None if self.calibration is None else self.calibration.as_doc(),
        }


def calibrated_thresholds(
    score: Sequence[float] | np.ndarray,
    error_eV_A: Sequence[float] | np.ndarray,
    selection: SelectionConfig,
) -> Thresholds:
    """The window for the next selection: calibrated when possible, else fixed.

    Parameters
    ----------
    score
        Selection scores of the campaign's labeled frames, as they were when
        the frames were selected (same form as ``selection.deviation``).
    error_eV_A
        Their true errors (:func:`frame_force_error_eV_A`), eV/Å.
    selection
        ``calibrate``, ``target_force_error_eV_A``, ``calibration_*``,
        ``calibrated_hi_factor`` and the fixed window.

    Returns
    -------
    Thresholds
    """
    fixed_lo, fixed_hi = selection.fixed_window()
    target = selection.target_force_error_eV_A

    def fixed(reason: str, fit: CalibrationFit | None = None) -> Thresholds:
        return Thresholds(fixed_lo, fixed_hi, "fixed", reason, selection.deviation, fit, target)

    if not selection.calibrate:
        return fixed("calibrate is off")
    s = np.asarray(score, dtype=float).reshape(-1)
    e = np.asarray(error_eV_A, dtype=float).reshape(-1)
    n = int(np.sum(np.isfinite(s) & np.isfinite(e)))
    if n < selection.calibration_min_points:
        return fixed(
            f"{n} labeled points < calibration_min_points {selection.calibration_min_points}"
        )
    try:
        fit = fit_calibration(s, e)
    except ValueError as exc:
        return fixed(f"no fit: {exc}")
    if fit.spearman is None or fit.spearman < selection.calibration_min_spearman:
        return fixed(
            f"Spearman {fit.spearman} < calibration_min_spearman "
            f"{selection.calibration_min_spearman}",
            fit,
        )
    if fit.exponent <= 0:
        return fixed(f"error does not grow with the score (exponent {fit.exponent:.2f})", fit)
    lo = fit.score_at_error(target, selection.calibration_confidence)
    clamp = selection.calibration_clamp_factor
    lo_clamped = min(max(lo, fixed_lo / clamp), fixed_lo * clamp)
    reason = f"fit on {n} points, Spearman {fit.spearman:.2f}"
    if lo_clamped != lo:
        reason += f"; lo {lo:.4g} clamped to {lo_clamped:.4g}"
    if lo_clamped <= 0:
        return fixed("calibrated lower bound is not positive", fit)
    hi = lo_clamped * selection.calibrated_hi_factor
    logger.info(
        "calibrated window [%.4g, %.4g) for target %.3g eV/Å (%s)", lo_clamped, hi, target, reason
    )
    return Thresholds(lo_clamped, hi, "calibrated", reason, selection.deviation, fit, target)


def plot_calibration(iteration_docs: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Per-iteration calibration figure (PNG) from iteration documents.

    Left: Spearman correlation between committee deviation and true force
    error, of the fit used by the selection (``selection.thresholds.calibration``)
    and on the iteration's newly labeled frames (``calibration_check``).
    Right: deviation vs true error of the newly labeled frames, one colour per
    iteration, with each iteration's lower threshold (vertical line) and the
    target error (horizontal line).

    Parameters
    ----------
    iteration_docs
        Documents of the ``iterations`` collection (or dicts with the same
        keys: ``iteration``, ``selection.thresholds``, ``calibration_check``
        with ``scores``, ``errors_eV_A``, ``spearman``).
    path
        Output PNG.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    its, fit_rho, new_rho = [], [], []
    cmap = plt.get_cmap("viridis")
    n_docs = max(len(iteration_docs), 1)
    target = None
    for position, doc in enumerate(iteration_docs):
        iteration = doc.get("iteration", position)
        thresholds = (doc.get("selection") or {}).get("thresholds") or {}
        calibration = thresholds.get("calibration") or {}
        check = doc.get("calibration_check") or {}
        its.append(iteration)
        fit_rho.append(calibration.get("spearman"))
        new_rho.append(check.get("spearman"))
        target = thresholds.get("target_force_error_eV_A") or target
        colour = cmap(position / max(n_docs - 1, 1))
        scores = np.asarray(check.get("scores") or [], dtype=float)
        errors = np.asarray(check.get("errors_eV_A") or [], dtype=float)
        if scores.size:
            audit = np.asarray(check.get("audit") or [False] * scores.size, dtype=bool)
            right.scatter(
                scores[~audit], errors[~audit], s=14, color=colour, label=f"it {iteration}"
            )
            if audit.any():
                right.scatter(scores[audit], errors[audit], s=22, color=colour, marker="x")
        if thresholds.get("lo") is not None:
            right.axvline(
                thresholds["lo"],
                color=colour,
                lw=1,
                ls="-" if thresholds.get("source") == "calibrated" else ":",
            )
    nan = float("nan")
    left.plot(
        its, [nan if v is None else v for v in fit_rho], "o-", label="fit (all labels so far)"
    )
    left.plot(its, [nan if v is None else v for v in new_rho], "s--", label="new labels")
    left.set_xlabel("iteration")
    left.set_ylabel("Spearman ρ(deviation, true error)")
    left.set_ylim(-1.05, 1.05)
    left.axhline(0, color="grey", lw=0.5)
    left.legend(fontsize=8)
    if target is not None:
        right.axhline(target, color="k", ls="--", lw=1, label="target error")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("committee max force deviation (eV/Å)")
    right.set_ylabel("true max force error (eV/Å)")
    right.set_title(
        "new labels; lines: trust_lo (solid calibrated, dotted fixed); x: audit", fontsize=8
    )
    handles, _labels = right.get_legend_handles_labels()
    if handles:
        right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
