"""Tests of alflow.calibration: the deviation → error fit and the calibrated window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alflow.calibration import (
    calibrated_thresholds,
    fit_calibration,
    frame_force_error_eV_A,
    plot_calibration,
    relative_deviation,
    spearman,
)
from alflow.config import SelectionConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic(n: int, prefactor: float, exponent: float, sigma: float, seed: int = 0):
    """Scores log-uniform in [0.01, 1], errors = prefactor · score^exponent · lognormal(σ)."""
    rng = np.random.default_rng(seed)
    score = np.exp(rng.uniform(np.log(0.01), np.log(1.0), n))
    error = prefactor * score**exponent * np.exp(sigma * rng.standard_normal(n))
    return score, error


def test_frame_force_error_is_the_worst_atom():
    predicted = np.zeros((3, 3))
    reference = np.array([[0.0, 0.0, 0.1], [0.3, 0.4, 0.0], [0.0, 0.0, 0.0]])
    assert frame_force_error_eV_A(predicted, reference) == pytest.approx(0.5)
    assert frame_force_error_eV_A(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    with pytest.raises(ValueError):
        frame_force_error_eV_A(np.zeros((2, 3)), np.zeros((3, 3)))


def test_relative_deviation_known_values():
    out = relative_deviation(np.array([0.2, 0.2]), np.array([0.0, 1.0]), 1.0)
    assert out.tolist() == pytest.approx([0.2, 0.1])
    with pytest.raises(ValueError):
        relative_deviation(0.1, 0.0, 0.0)


def test_spearman_monotone_and_undefined():
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_fit_recovers_a_known_power_law():
    score, error = synthetic(600, prefactor=2.0, exponent=1.5, sigma=0.2)
    fit = fit_calibration(score, error)
    assert fit.n_points == 600
    assert fit.exponent == pytest.approx(1.5, abs=0.05)
    assert math.exp(fit.log_prefactor) == pytest.approx(2.0, rel=0.1)
    assert fit.residual_std == pytest.approx(0.2, abs=0.02)
    assert fit.spearman > 0.9
    # the median prediction inverts: error at score_at_error(t) is t
    s_lo = fit.score_at_error(0.1)
    assert float(fit.predict_error_eV_A(s_lo)) == pytest.approx(0.1)
    # exact answer of the true model: (0.1 / 2)^(1/1.5)
    assert s_lo == pytest.approx((0.1 / 2.0) ** (1 / 1.5), rel=0.1)
    # a more conservative confidence gives a lower threshold
    assert fit.score_at_error(0.1, confidence=0.9) < s_lo
    doc = fit.as_doc()
    assert set(doc) >= {"n_points", "spearman", "prefactor_eV_A", "exponent", "log_residual_std"}


def test_fit_rejects_degenerate_input():
    with pytest.raises(ValueError):
        fit_calibration([0.1, 0.2], [0.1, 0.2])
    with pytest.raises(ValueError):
        fit_calibration([0.1, 0.1, 0.1], [0.1, 0.2, 0.3])


def test_thresholds_calibrated_from_the_target():
    score, error = synthetic(200, prefactor=2.0, exponent=1.0, sigma=0.1)
    config = SelectionConfig(target_force_error_eV_A=0.2, calibrated_hi_factor=5.0)
    window = calibrated_thresholds(score, error, config)
    assert window.source == "calibrated"
    assert window.lo == pytest.approx(0.1, rel=0.1)  # 2 · s = 0.2
    assert window.hi == pytest.approx(5.0 * window.lo)
    doc = window.as_doc()
    assert doc["calibration"]["n_points"] == 200
    assert doc["target_force_error_eV_A"] == 0.2


def test_thresholds_fall_back_to_the_fixed_window():
    score, error = synthetic(200, prefactor=2.0, exponent=1.0, sigma=0.1)
    off = calibrated_thresholds(score, error, SelectionConfig(calibrate=False))
    assert (off.lo, off.hi, off.source) == (0.05, 0.5, "fixed")
    n_few = SelectionConfig().calibration_min_points - 1
    few = calibrated_thresholds(score[:n_few], error[:n_few], SelectionConfig())
    assert few.source == "fixed" and "calibration_min_points" in few.reason
    rng = np.random.default_rng(1)
    noise = calibrated_thresholds(rng.uniform(size=100), rng.uniform(size=100), SelectionConfig())
    assert noise.source == "fixed" and "Spearman" in noise.reason
    relative = calibrated_thresholds(
        score, error, SelectionConfig(calibrate=False, deviation="relative")
    )
    assert (relative.lo, relative.hi) == (0.05, 0.5)


def test_thresholds_are_clamped():
    score, error = synthetic(100, prefactor=2.0, exponent=1.0, sigma=0.05)
    config = SelectionConfig(target_force_error_eV_A=50.0, calibration_clamp_factor=4.0)
    window = calibrated_thresholds(score, error, config)
    assert window.lo == pytest.approx(0.05 * 4.0)
    assert "clamped" in window.reason


def test_plot_calibration_writes_a_png(tmp_path):
    docs = []
    for iteration in range(3):
        score, error = synthetic(10, 2.0, 1.0, 0.2, seed=iteration)
        docs.append(
            {
                "iteration": iteration,
                "selection": {
                    "thresholds": {
                        "lo": 0.05 + 0.01 * iteration,
                        "source": "calibrated" if iteration else "fixed",
                        "target_force_error_eV_A": 0.15,
                        "calibration": {"spearman": 0.5 + 0.1 * iteration} if iteration else None,
                    }
                },
                "calibration_check": {
                    "scores": score.tolist(),
                    "errors_eV_A": error.tolist(),
                    "audit": [i < 2 for i in range(10)],
                    "spearman": spearman(score, error),
                },
            }
        )
    docs.append({"iteration": 3})  # an iteration without figures yet
    path = plot_calibration(docs, tmp_path / "calibration.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
