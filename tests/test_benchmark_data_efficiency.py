"""The arithmetic behind benchmarks/data_efficiency.py's labels-to-target figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import step_helpers  # tests/ is on sys.path

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "data_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    with step_helpers.benchmark_module("data_efficiency") as module:
        yield module


def curve(*points):
    return [{"labels": n, "force_rmse_eV_A": r} for n, r in points]


def test_labels_to_target_measured_and_interpolated(bench):
    c = curve((6, 0.1), (12, 0.04), (18, 0.01))
    assert bench.labels_to_target(c, 0.02) == 18
    # log-linear between 12 (0.04) and 18 (0.01): 0.02 is half way in log
    assert bench.labels_to_target_interpolated(c, 0.02) == pytest.approx(15.0)
    assert bench.labels_to_target_interpolated(c, 0.04) == pytest.approx(12.0)
    assert bench.labels_to_target_interpolated(c, 0.2) == 6.0
    assert bench.labels_to_target(c, 0.001) is None
    assert bench.labels_to_target_interpolated(c, 0.001) is None
    # the first crossing counts, even if the curve rises again afterwards
    bumpy = curve((6, 0.1), (12, 0.01), (18, 0.05), (24, 0.005))
    assert bench.labels_to_target(bumpy, 0.02) == 12
    assert 6 < bench.labels_to_target_interpolated(bumpy, 0.02) < 12
