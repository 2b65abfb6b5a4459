"""`alflow report`: the data behind each figure, the PNGs and the summary.

:func:`build_store` writes a small embedded store with the real document
shapes (campaign, structures, labels, iterations) and a real LaunchPad with
alflow's iteration workflows; the web GUI tests reuse it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alflow.config import CampaignConfig

CAMPAIGN = "demo"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONFIG = CampaignConfig.model_validate(
    {
        "name": CAMPAIGN,
        "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]},
        "committee": {"members": 2},
        "exploration": {"walkers": 2},
        "selection": {"trust_lo_eV_A": 0.05, "trust_hi_eV_A": 0.4},
        "loop": {"max_dft_labels": 20},
    }
)

#: Walker frames: (iteration, max force deviation eV/Å, status, DFT force offset or None,
#: label wall_s, label ok).
FRAMES: list[tuple[int, float, str, float | None, float, bool]] = [
    (0, 0.01, "accurate", None, 0.0, True),
    (0, 0.10, "labeled", 0.1, 3600.0, True),
    (0, 0.20, "labeled", -0.1, 1800.0, True),
    (0, 0.30, "failed", None, 900.0, False),
    (0, 0.35, "rejected", None, 0.0, True),
    (0, 0.60, "unphysical", None, 0.0, True),
    (1, 0.02, "accurate", None, 0.0, True),
    (1, 0.03, "accurate", None, 0.0, True),
    (1, 0.15, "labeled", 0.05, 7200.0, True),
]
SEED_WALL_S = 3600.0
CORES = 2
N_ATOMS = 4


def _atoms(shift: float) -> Any:
    from ase.build import bulk

    atoms = bulk("Cu", cubic=True)
    atoms.positions[0] += [shift, 0.0, 0.0]
    return atoms


def _committee_forces(index: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, N_ATOMS * 3).reshape(N_ATOMS, 3) * (index + 1) / 4


def fill_store(store: Any) -> list[str]:
    """Write the synthetic campaign's documents; return the seed keys."""
    store.ensure_indexes()
    store.register_campaign(CONFIG)
    seeds = ["seed-a", "seed-b"]
    store.add_structures(
        CAMPAIGN,
        [_atoms(0.01), _atoms(0.02)],
        seeds,
        iteration=0,
        status="seed",
        origins=[{"kind": "initial"}] * 2,
    )
    for key in seeds:
        store.add_label(
            key,
            {
                "parameters_hash": "p",
                "ok": True,
                "energy_eV": -10.0,
                "forces_eV_A": np.zeros((N_ATOMS, 3)).tolist(),
                "wall_s": SEED_WALL_S,
                "cores": CORES,
                "campaign": CAMPAIGN,
                "iteration": 0,
            },
        )
    for i, (iteration, dev, status, offset, wall_s, ok) in enumerate(FRAMES):
        key = f"frame-{i}"
        forces = _committee_forces(i)
        store.add_structures(
            CAMPAIGN,
            [_atoms(0.05 + 0.01 * i)],
            [key],
            iteration=iteration,
            status="explored",
            origins=[{"kind": "walker", "iteration": iteration, "walker": 0, "step": i}],
            extras=[
                {
                    "uncertainty": {"max_force_dev_eV_A": dev, "energy_std_eV": 0.01},
                    "committee": {"energy_eV": -10.0, "forces_eV_A": forces.tolist()},
                }
            ],
        )
        if wall_s:
            label: dict[str, Any] = {
                "parameters_hash": "p",
                "ok": ok,
                "wall_s": wall_s,
                "cores": CORES,
                "campaign": CAMPAIGN,
                "iteration": iteration,
            }
            if ok:
                label.update({"energy_eV": -10.01, "forces_eV_A": (forces + offset).tolist()})
            else:
                label["error"] = "SCF did not converge"
            store.add_label(key, label)
        saved = store.label(key, "p")
        store.set_status(CAMPAIGN, [key], status, label_id=saved["_id"] if saved else None)
    store.put_iteration(
        CAMPAIGN,
        0,
        {
            "iteration": 0,
            "explored": 6,
            "accurate": 1,
            "labeled": 2,
            "failed": 1,
            "rejected": 1,
            "accurate_fraction": 1 / 6,
            "errors": {"force_rmse_eV_A": 0.1, "energy_mae_meV_atom": 2.5, "n_frames": 2},
            "labels_spent_total": 5,
            "trust_lo_eV_A": 0.05,
            "trust_hi_eV_A": 0.4,
            "decision": {"go_on": True, "status": "running", "reason": "next iteration"},
        },
    )
    store.put_iteration(
        CAMPAIGN,
        1,
        {
            "iteration": 1,
            "explored": 3,
            "accurate": 2,
            "labeled": 1,
            "accurate_fraction": 2 / 3,
            "errors": {"force_rmse_eV_A": 0.05, "energy_mae_meV_atom": 1.0, "n_frames": 1},
            "labels_spent_total": 6,
            "trust_lo_eV_A": 0.05,
            "trust_hi_eV_A": 0.4,
            "decision": {"go_on": False, "status": "stopped", "reason": "iteration limit"},
        },
    )
    store.set_campaign_status(CAMPAIGN, "stopped", "iteration limit reached (2)")
    return seeds


def complete_fireworks(launchpad: Any, fw_ids: list[int]) -> None:
    """Move READY Fireworks to COMPLETED through FireWorks' own launch records."""
    from fireworks import FWAction, FWorker

    for fw_id in fw_ids:
        _, launch_id = launchpad.checkout_fw(FWorker(name="test"), ".", fw_id=fw_id)
        launchpad.complete_launch(launch_id, action=FWAction(), state="COMPLETED")


def build_store(path: Path, *, close: bool = True) -> Any:
    """Write the synthetic store file; return the writable EmbeddedServer (closed if asked).

    The LaunchPad holds iteration 0 of the campaign with its seed labels and
    references COMPLETED (so the members' training is READY).
    """
    from alflow.store import Connection, Store
    from alflow.store.embedded import EmbeddedServer
    from alflow.workflow.builder import iteration_workflow
    from alflow.workflow.launchpad import open_launchpad

    server = EmbeddedServer(path, writable=True)
    connection = Connection(client=server.client, store=str(path), embedded=server)
    seeds = fill_store(Store(server.client["alflow"]))
    launchpad = open_launchpad(connection)
    launchpad.add_wf(iteration_workflow(CONFIG, 0, seed_keys=seeds))
    ready = [
        fw["fw_id"]
        for fw in launchpad.fireworks.find({"spec.step": {"$in": ["label", "references"]}})
    ]
    complete_fireworks(launchpad, ready)
    server.save()
    if close:
        server.close()
    return server


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "store.bson"
    build_store(path)
    return path


@pytest.fixture()
def store(store_file: Path) -> Any:
    from alflow.store import Store
    from alflow.store.embedded import EmbeddedServer

    server = EmbeddedServer(store_file, writable=False)
    return Store(server.client["alflow"])


def test_learning_curve_data(store: Any) -> None:
    from alflow.report.summary import learning_curve

    curve = learning_curve(store, CAMPAIGN)
    assert curve.iteration.tolist() == [0, 1]
    assert curve.labels_total.tolist() == [5, 6]
    assert curve.force_rmse_eV_A.tolist() == [0.1, 0.05]
    assert curve.energy_mae_meV_atom.tolist() == [2.5, 1.0]
    assert curve.n_new_labels.tolist() == [2, 1]
    assert not curve.has_holdout and curve.holdout_force_rmse_eV_A is None


def test_learning_curve_with_holdout(store_file: Path, tmp_path: Path) -> None:
    from alflow.report.summary import HOLDOUT_KEY, learning_curve
    from alflow.store import Store
    from alflow.store.embedded import EmbeddedServer

    server = EmbeddedServer(store_file, writable=False)
    data = Store(server.client["alflow"])
    data.put_iteration(CAMPAIGN, 1, {HOLDOUT_KEY: {"force_rmse_eV_A": 0.07}})
    curve = learning_curve(data, CAMPAIGN)
    assert curve.has_holdout
    assert np.isnan(curve.holdout_force_rmse_eV_A[0]) and curve.holdout_force_rmse_eV_A[1] == 0.07


def test_uncertainty_data(store: Any) -> None:
    from alflow.report.summary import uncertainty_data

    data = uncertainty_data(store, CAMPAIGN)
    assert sorted(data.max_force_dev_eV_A) == [0, 1]
    expected = {it: sorted(d for i, d, *_ in FRAMES if i == it) for it in (0, 1)}
    for it in (0, 1):
        assert sorted(data.max_force_dev_eV_A[it].tolist()) == pytest.approx(expected[it])
        assert data.trust_window_eV_A[it] == (0.05, 0.4)


def test_parity_data(store: Any) -> None:
    from alflow.report.summary import parity_data

    data = parity_data(store, CAMPAIGN)
    labeled = [(i, f) for i, f in enumerate(FRAMES) if f[2] == "labeled"]
    assert data.n_frames == len(labeled) == 3
    assert len(data.dft_eV_A) == 3 * N_ATOMS * 3
    assert sorted(set(data.iteration.tolist())) == [0, 1]
    expected_committee = np.concatenate([_committee_forces(i).ravel() for i, _ in labeled])
    np.testing.assert_allclose(data.committee_eV_A, expected_committee)
    offsets = np.concatenate([np.full(N_ATOMS * 3, f[3]) for _, f in labeled])
    np.testing.assert_allclose(data.dft_eV_A - data.committee_eV_A, offsets)
    assert data.rmse_eV_A == pytest.approx(np.sqrt(np.mean(offsets**2)))


def test_label_outcomes_and_core_hours(store: Any) -> None:
    from alflow.report.summary import core_hours, iteration_rows, label_outcomes

    outcomes = label_outcomes(store, CAMPAIGN)
    assert outcomes == {
        0: {"labeled": 4, "failed": 1, "rejected": 1},  # 2 seeds + 2 walker frames
        1: {"labeled": 1, "failed": 0, "rejected": 0},
    }
    cost = core_hours(store, CAMPAIGN)
    assert cost.iteration.tolist() == [0, 1]
    hours_0 = (2 * SEED_WALL_S + 3600 + 1800 + 900) * CORES / 3600
    hours_1 = 7200 * CORES / 3600
    assert cost.core_hours.tolist() == pytest.approx([hours_0, hours_1])
    assert cost.cumulative_core_hours.tolist() == pytest.approx([hours_0, hours_0 + hours_1])
    assert cost.n_calculations.tolist() == [5, 1]
    rows = iteration_rows(store, CAMPAIGN)
    assert [r["state"] for r in rows] == ["running", "stopped"]
    assert rows[0]["core_hours"] == pytest.approx(hours_0)


def test_label_cost_counts_retries() -> None:
    from alflow.report.summary import label_cost

    assert label_cost({"wall_s": 10.0, "cores": 4}) == (10.0, 4)
    retried = {"wall_s": 10.0, "cores": 4, "attempts": [{"wall_s": 30.0}, {"wall_s": 10.0}]}
    assert label_cost(retried) == (40.0, 4)
    failed = {"ok": False, "attempts": [{"wall_s": 5.0, "cores": 2}, {"wall_s": 7.0}]}
    assert label_cost(failed) == (12.0, 2)
    assert label_cost({"ok": False, "attempts": [{"wall_s": 5.0}]}) == (5.0, None)


def test_figures_are_pngs_with_the_data(store: Any) -> None:
    from alflow.report.plots import (
        FIGURES,
        plot_learning_curve,
        plot_parity,
        plot_uncertainty,
        render_figure,
    )
    from alflow.report.summary import learning_curve, parity_data, uncertainty_data

    for name in FIGURES:
        png = render_figure(store, CAMPAIGN, name)
        assert png.startswith(PNG_MAGIC) and len(png) > 5000, name
    # The artists carry the extracted numbers.
    fig = plot_learning_curve(learning_curve(store, CAMPAIGN))
    line = fig.axes[0].lines[0]
    assert line.get_xdata().tolist() == [0, 1] and line.get_ydata().tolist() == [0.1, 0.05]
    assert fig.axes[1].lines[0].get_xdata().tolist() == [5, 6]
    assert "no held-out set" in fig.axes[1].get_legend().get_title().get_text()
    fig = plot_uncertainty(uncertainty_data(store, CAMPAIGN))
    spans = [p for p in fig.axes[0].patches if "trust window" in (p.get_label() or "")]
    assert spans, "the trust window is drawn"
    x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
    assert (x0, x1) == pytest.approx((0.05, 0.4))
    fig = plot_parity(parity_data(store, CAMPAIGN))
    points = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    assert len(points) == 3 * N_ATOMS * 3


def test_empty_campaign_draws_placeholders(tmp_path: Path) -> None:
    from alflow.report.plots import FIGURES, render_figure
    from alflow.store import Store
    from alflow.store.embedded import EmbeddedServer

    server = EmbeddedServer(tmp_path / "empty.bson", writable=True)
    data = Store(server.client["alflow"])
    data.register_campaign(CONFIG)
    for name in FIGURES:
        assert render_figure(data, CAMPAIGN, name).startswith(PNG_MAGIC)
    server.close()


def test_alflow_report_cli(store_file: Path, tmp_path: Path) -> None:
    before = store_file.read_bytes()
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alflow.cli",
            "report",
            "--store",
            str(store_file),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == sorted(
        f"{CAMPAIGN}-{n}.png"
        for n in ("learning-curve", "uncertainty", "parity", "labels", "core-hours")
    )
    for png in pngs:
        assert png.read_bytes().startswith(PNG_MAGIC)
    summary = (out / f"{CAMPAIGN}-summary.md").read_text()
    assert "| 1 | stopped | 1 | 0 | 0 |" in summary
    assert "none in this store" in summary
    for png in pngs:
        assert f"]({png.name})" in summary
    assert store_file.read_bytes() == before, "report must not write the store"

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "alflow.cli",
            "report",
            "--store",
            str(store_file),
            "--campaign",
            "nope",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no campaign 'nope'" in missing.stderr
