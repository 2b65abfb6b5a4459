"""`alflow report`: the data behind each figure, the PNGs and the summary.

:func:`build_store` writes a small campaign with the real document shapes
(campaign, structures, labels, iterations) and a real LaunchPad with alflow's
iteration workflows into databases of the test server; the web GUI tests
reuse it, and :func:`dump_databases` proves that readers write nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
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


def build_store(settings: Any) -> tuple[Any, Any]:
    """Write the synthetic campaign into ``settings``' databases; return (Store, LaunchPad).

    The LaunchPad holds iteration 0 of the campaign with its seed labels and
    references COMPLETED (so the members' training is READY). Both stay open,
    as a running ``alflow run`` holds them.
    """
    from alflow.store import open_store
    from alflow.workflow.builder import iteration_workflow
    from alflow.workflow.launchpad import open_launchpad

    connection, store = open_store(settings.store, db_name=settings.store_name, settings=settings)
    seeds = fill_store(store)
    launchpad = open_launchpad(connection, settings.launchpad_name)
    launchpad.add_wf(iteration_workflow(CONFIG, 0, seed_keys=seeds))
    ready = [
        fw["fw_id"]
        for fw in launchpad.fireworks.find({"spec.step": {"$in": ["label", "references"]}})
    ]
    complete_fireworks(launchpad, ready)
    return store, launchpad


def dump_databases(uri: str, names: Any) -> dict[str, Any]:
    """Every collection of the named databases: documents and indexes (to prove nothing wrote)."""
    import pymongo

    client: Any = pymongo.MongoClient(uri)
    try:
        out: dict[str, Any] = {}
        for name in sorted(names):
            db = client[name]
            for collection in sorted(db.list_collection_names()):
                out[f"{name}.{collection}"] = (
                    list(db[collection].find().sort("_id", 1)),
                    sorted(db[collection].index_information()),
                )
        return out
    finally:
        client.close()


@contextlib.contextmanager
def demo_databases(mongo_uri: str) -> Iterator[Any]:
    """Settings on fresh databases of the test server holding the demo campaign (dropped after)."""
    import pymongo

    from alflow.settings import Settings

    tag = uuid.uuid4().hex[:10]
    settings = Settings(store=mongo_uri, store_name=f"alflow_{tag}", launchpad_name=f"fw_{tag}")
    try:
        build_store(settings)
        yield settings
    finally:
        client: Any = pymongo.MongoClient(mongo_uri)
        client.drop_database(settings.store_name)
        client.drop_database(settings.launchpad_name)
        client.close()


def env_for(settings: Any) -> dict[str, str]:
    """The environment that points ``alflow`` subprocesses at ``settings``' databases."""
    return {
        **os.environ,
        "ALFLOW_STORE": settings.store,
        "ALFLOW_STORE_NAME": settings.store_name,
        "ALFLOW_LAUNCHPAD_NAME": settings.launchpad_name,
    }


@pytest.fixture(scope="module")
def demo_settings(mongo_uri: str) -> Iterator[Any]:
    """The demo campaign on the test server, shared by this module's read-only tests."""
    with demo_databases(mongo_uri) as settings:
        yield settings


@pytest.fixture(scope="module")
def demo(demo_settings: Any) -> Any:
    """A reader's Store on the demo campaign (no indexes created)."""
    from alflow.store import open_store

    _, store = open_store(
        demo_settings.store,
        db_name=demo_settings.store_name,
        create_indexes=False,
        settings=demo_settings,
    )
    return store


def test_learning_curve_data(demo: Any) -> None:
    from alflow.report.summary import learning_curve

    curve = learning_curve(demo, CAMPAIGN)
    assert curve.iteration.tolist() == [0, 1]
    assert curve.labels_total.tolist() == [5, 6]
    assert curve.force_rmse_eV_A.tolist() == [0.1, 0.05]
    assert curve.energy_mae_meV_atom.tolist() == [2.5, 1.0]
    assert curve.n_new_labels.tolist() == [2, 1]
    assert not curve.has_holdout and curve.holdout_force_rmse_eV_A is None


def test_learning_curve_with_holdout(store: Any) -> None:
    from alflow.report.summary import HOLDOUT_KEY, learning_curve

    fill_store(store)
    assert not learning_curve(store, CAMPAIGN).has_holdout
    store.put_iteration(CAMPAIGN, 1, {HOLDOUT_KEY: {"force_rmse_eV_A": 0.07}})
    curve = learning_curve(store, CAMPAIGN)
    assert curve.has_holdout
    assert np.isnan(curve.holdout_force_rmse_eV_A[0]) and curve.holdout_force_rmse_eV_A[1] == 0.07


def test_uncertainty_data(demo: Any) -> None:
    from alflow.report.summary import uncertainty_data

    data = uncertainty_data(demo, CAMPAIGN)
    assert sorted(data.max_force_dev_eV_A) == [0, 1]
    expected = {it: sorted(d for i, d, *_ in FRAMES if i == it) for it in (0, 1)}
    for it in (0, 1):
        assert sorted(data.max_force_dev_eV_A[it].tolist()) == pytest.approx(expected[it])
        assert data.trust_window_eV_A[it] == (0.05, 0.4)


def test_parity_data(demo: Any) -> None:
    from alflow.report.summary import parity_data

    data = parity_data(demo, CAMPAIGN)
    labeled = [(i, f) for i, f in enumerate(FRAMES) if f[2] == "labeled"]
    assert data.n_frames == len(labeled) == 3
    assert len(data.dft_eV_A) == 3 * N_ATOMS * 3
    assert sorted(set(data.iteration.tolist())) == [0, 1]
    expected_committee = np.concatenate([_committee_forces(i).ravel() for i, _ in labeled])
    np.testing.assert_allclose(data.committee_eV_A, expected_committee)
    offsets = np.concatenate([np.full(N_ATOMS * 3, f[3]) for _, f in labeled])
    np.testing.assert_allclose(data.dft_eV_A - data.committee_eV_A, offsets)
    assert data.rmse_eV_A == pytest.approx(np.sqrt(np.mean(offsets**2)))


def test_label_outcomes_and_core_hours(demo: Any) -> None:
    from alflow.report.summary import core_hours, iteration_rows, label_outcomes

    outcomes = label_outcomes(demo, CAMPAIGN)
    assert outcomes == {
        0: {"labeled": 4, "failed": 1, "rejected": 1},  # 2 seeds + 2 walker frames
        1: {"labeled": 1, "failed": 0, "rejected": 0},
    }
    cost = core_hours(demo, CAMPAIGN)
    assert cost.iteration.tolist() == [0, 1]
    hours_0 = (2 * SEED_WALL_S + 3600 + 1800 + 900) * CORES / 3600
    hours_1 = 7200 * CORES / 3600
    assert cost.core_hours.tolist() == pytest.approx([hours_0, hours_1])
    assert cost.cumulative_core_hours.tolist() == pytest.approx([hours_0, hours_0 + hours_1])
    assert cost.n_calculations.tolist() == [5, 1]
    rows = iteration_rows(demo, CAMPAIGN)
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


def test_figures_are_pngs_with_the_data(demo: Any) -> None:
    from alflow.report.plots import (
        FIGURES,
        plot_learning_curve,
        plot_parity,
        plot_uncertainty,
        render_figure,
    )
    from alflow.report.summary import learning_curve, parity_data, uncertainty_data

    for name in FIGURES:
        png = render_figure(demo, CAMPAIGN, name)
        assert png.startswith(PNG_MAGIC) and len(png) > 5000, name
    # The artists carry the extracted numbers.
    fig = plot_learning_curve(learning_curve(demo, CAMPAIGN))
    line = fig.axes[0].lines[0]
    assert line.get_xdata().tolist() == [0, 1] and line.get_ydata().tolist() == [0.1, 0.05]
    assert fig.axes[1].lines[0].get_xdata().tolist() == [5, 6]
    assert "no held-out set" in fig.axes[1].get_legend().get_title().get_text()
    fig = plot_uncertainty(uncertainty_data(demo, CAMPAIGN))
    spans = [p for p in fig.axes[0].patches if "trust window" in (p.get_label() or "")]
    assert spans, "the trust window is drawn"
    x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
    assert (x0, x1) == pytest.approx((0.05, 0.4))
    fig = plot_parity(parity_data(demo, CAMPAIGN))
    points = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    assert len(points) == 3 * N_ATOMS * 3


def test_empty_campaign_draws_placeholders(store: Any) -> None:
    from alflow.report.plots import FIGURES, render_figure

    store.register_campaign(CONFIG)
    for name in FIGURES:
        assert render_figure(store, CAMPAIGN, name).startswith(PNG_MAGIC)


def _report(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alflow.cli", "report", "--store", settings.store, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_for(settings),
    )


def test_alflow_report_cli(demo_settings: Any, tmp_path: Path) -> None:
    names = (demo_settings.store_name, demo_settings.launchpad_name)
    before = dump_databases(demo_settings.store, names)
    out = tmp_path / "report"
    result = _report(demo_settings, "--out", str(out))
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
    assert dump_databases(demo_settings.store, names) == before, "report must not write the store"

    missing = _report(demo_settings, "--campaign", "nope", "--out", str(out))
    assert missing.returncode == 2 and "no campaign 'nope'" in missing.stderr


def test_report_refuses_a_missing_store_directory(tmp_path: Path) -> None:
    from alflow.settings import Settings

    absent = tmp_path / "no-store"
    result = _report(Settings(store=str(absent)), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "no alflow store" in result.stderr
    assert not absent.exists(), "a reader never creates a store"


def test_readers_in_other_processes_while_a_campaign_writes(tmp_path: Path) -> None:
    """A store directory held open by a writer: status, db and report read it meanwhile.

    The readers find the writer's local server (no second server, no lock),
    see every write at once, and leave the server running for the writer.
    """
    from alflow.settings import Settings
    from alflow.store import open_store
    from alflow.store.server import read_record, stop_server

    store_dir = tmp_path / "alflow-store"
    settings = Settings(store=str(store_dir))
    try:
        connection, writer = open_store(str(store_dir), settings=settings)
        fill_store(writer)
        server = read_record(store_dir)
        assert server is not None

        def alflow(*args: str) -> str:
            run = subprocess.run(
                [sys.executable, "-m", "alflow.cli", *args, "--store", str(store_dir)],
                capture_output=True,
                text=True,
                timeout=120,
                env=env_for(settings),
            )
            assert run.returncode == 0, run.stderr[-2000:]
            return run.stdout

        status = json.loads(alflow("status", "--campaign", CAMPAIGN, "--json"))
        assert [it["iteration"] for it in status["iterations"]] == [0, 1]
        stats = json.loads(alflow("db", "stats", "--campaign", CAMPAIGN, "--json"))
        assert stats["n_structures"] == 2 + len(FRAMES)
        assert f"campaign '{CAMPAIGN}'" in alflow("report", "--out", str(tmp_path / "r1"))
        assert "| 2 |" not in (tmp_path / "r1" / f"{CAMPAIGN}-summary.md").read_text()

        # the campaign goes on writing while nobody saves anything
        writer.put_iteration(CAMPAIGN, 2, {"iteration": 2, "explored": 4})
        writer.add_structures(
            CAMPAIGN,
            [_atoms(0.3)],
            ["frame-new"],
            iteration=2,
            status="explored",
            origins=[{"kind": "walker", "iteration": 2}],
        )
        status = json.loads(alflow("status", "--campaign", CAMPAIGN, "--json"))
        assert [it["iteration"] for it in status["iterations"]] == [0, 1, 2]
        stats = json.loads(alflow("db", "stats", "--campaign", CAMPAIGN, "--json"))
        assert stats["n_structures"] == 3 + len(FRAMES) and stats["per_iteration"]["2"] == 1
        alflow("report", "--out", str(tmp_path / "r2"))
        assert "| 2 |" in (tmp_path / "r2" / f"{CAMPAIGN}-summary.md").read_text()

        assert read_record(store_dir) == server, "the readers used the writer's server"
        writer.set_campaign_status(CAMPAIGN, "running")
        assert writer.campaign(CAMPAIGN)["status"] == "running", "the writer still writes"
        connection.client.close()
    finally:
        stop_server(store_dir)
