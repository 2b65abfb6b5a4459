"""selection.strategy: random (alflow.steps.select_random) on the test server.

Explored frames carry the documents the explore step writes (uncertainty and
committee predictions from :class:`alflow.testing.FakeCommittee`); the
random strategy ignores them. Also the arithmetic of
benchmarks/campaign_efficiency.py's labels-to-target figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import step_helpers  # tests/ is on sys.path
from ase import Atoms
from ase.build import bulk

from alflow.steps.context import StepContext
from alflow.steps.label import label_structure
from alflow.steps.select import select_for_labeling
from alflow.steps.select_random import DRAWN_REASON, NOT_DRAWN_REASON
from alflow.structures import structure_key
from alflow.testing import FakeCommittee

CAMPAIGN = "rnd"
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign_efficiency.py"


def make_ctx(
    store: Any,
    tmp_path: Path,
    selection: dict[str, Any] | None = None,
    loop: dict[str, Any] | None = None,
) -> StepContext:
    selection = {"strategy": "random", "max_per_iteration": 4, **(selection or {})}
    return step_helpers.make_ctx(store, tmp_path, CAMPAIGN, selection, loop)


def frames(n: int, seed: int = 0, squeeze_every: int = 0) -> list[Atoms]:
    """Rattled 8-atom Cu cells; every ``squeeze_every``-th has two atoms 0.9 Å apart."""
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.05, seed=100 * seed + i)
        if squeeze_every and i % squeeze_every == 0:
            atoms.positions[1] = atoms.positions[0] + [0.9, 0.0, 0.0]
        out.append(atoms)
    return out


def add_explored(ctx: StepContext, iteration: int, atoms_list: list[Atoms]) -> list[str]:
    """Store ``atoms_list`` as explored frames of ``iteration``; return their keys."""
    committee = FakeCommittee(3, noise_eV_A=0.05, seed=iteration)
    return step_helpers.store_explored(ctx, iteration, atoms_list, committee)


def statuses(ctx: StepContext, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    docs = ctx.store.find_structures(
        {"campaign": CAMPAIGN, "key": {"$in": keys}}, {"key": 1, "status": 1, "reason": 1}
    )
    return {d["key"]: (d["status"], d.get("reason")) for d in docs}


def test_random_draws_the_budget_and_records_the_strategy(tmp_path, new_store):
    ctx = make_ctx(new_store(), tmp_path)
    keys = add_explored(ctx, 0, frames(12))
    result = select_for_labeling(ctx, 0)
    assert result["strategy"] == "random" and result["audit"] == []
    assert len(result["selected"]) == 4 == result["budget"]
    assert set(result["selected"]) <= set(keys)
    status = statuses(ctx, keys)
    assert sorted(k for k, (s, _) in status.items() if s == "selected") == sorted(
        result["selected"]
    )
    assert all(status[k][1] == DRAWN_REASON for k in result["selected"])
    others = [status[k] for k in keys if k not in result["selected"]]
    assert others == [("rejected", NOT_DRAWN_REASON)] * 8
    record = ctx.store.iteration_docs(CAMPAIGN)[0]["selection"]
    assert record["strategy"] == "random"
    assert (record["explored"], record["selected"], record["not_drawn"]) == (12, 4, 8)
    assert "thresholds" not in record  # no trust window


def test_campaign_budget_left_caps_the_draw(tmp_path, new_store):
    ctx = make_ctx(new_store(), tmp_path, loop={"max_dft_labels": 3})
    seed = frames(1, seed=9)
    ctx.store.add_structures(
        CAMPAIGN,
        seed,
        [structure_key(seed[0])],
        iteration=0,
        status="seed",
        origins=[{"kind": "seed"}],
    )
    label_structure(ctx, 0, structure_key(seed[0]))
    add_explored(ctx, 0, frames(10))
    result = select_for_labeling(ctx, 0)
    assert result["budget"] == 2 and len(result["selected"]) == 2


def test_only_sane_frames_are_drawn(tmp_path, new_store):
    ctx = make_ctx(new_store(), tmp_path, selection={"max_per_iteration": 20})
    keys = add_explored(ctx, 0, frames(9, squeeze_every=3))  # 0, 3, 6: a pair 0.9 Å apart
    result = select_for_labeling(ctx, 0)
    sane = [keys[i] for i in (1, 2, 4, 5, 7, 8)]
    assert sorted(result["selected"]) == sorted(sane)  # budget larger than the sane frames
    status = statuses(ctx, keys)
    for i in (0, 3, 6):
        assert status[keys[i]][0] == "rejected" and status[keys[i]][1].startswith("sanity: ")
    assert result["counts"]["rejected"] == 3 and result["counts"]["sane"] == 6


def _draw(store: Any, tmp_path: Path, iteration: int, seed: int) -> list[str]:
    ctx = make_ctx(store, tmp_path, selection={"seed": seed})
    add_explored(ctx, iteration, frames(20))
    return sorted(select_for_labeling(ctx, iteration)["selected"])


def test_draw_is_reproducible_per_seed_and_differs_between_iterations(tmp_path, new_store):
    first = _draw(new_store(), tmp_path, 0, seed=0)
    assert _draw(new_store(), tmp_path, 0, seed=0) == first
    assert _draw(new_store(), tmp_path, 0, seed=1) != first
    assert _draw(new_store(), tmp_path, 1, seed=0) != first


def test_committee_strategy_records_its_name(tmp_path, new_store):
    ctx = make_ctx(new_store(), tmp_path, selection={"strategy": "committee", "descriptor": "rdf"})
    add_explored(ctx, 0, frames(6))
    result = select_for_labeling(ctx, 0, committee=FakeCommittee(3))
    assert "strategy" not in result
    assert ctx.store.iteration_docs(CAMPAIGN)[0]["selection"]["strategy"] == "committee"


# --------------------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def bench():
    with step_helpers.benchmark_module("campaign_efficiency") as module:
        yield module


def point(labels: float, rmse: float) -> dict[str, float]:
    return {"labels": labels, "force_rmse_eV_A": rmse}


def test_labels_to_target_on_a_hand_made_curve(bench):
    curve = [point(16, 0.2), point(22, 0.1), point(28, 0.04), point(34, 0.05), point(40, 0.01)]
    assert bench.labels_to_target(curve, 0.04) == 28
    assert bench.labels_to_target(curve, 0.05) == 28  # the first point at or below
    assert bench.labels_to_target(curve, 0.3) == 16
    assert bench.labels_to_target(curve, 0.005) is None
    # log-linear between 22 (0.1) and 28 (0.04): sqrt(0.1 * 0.04) is half way
    assert bench.labels_to_target_interpolated(curve, np.sqrt(0.004)) == pytest.approx(25.0)


def test_summary_target_is_randoms_final_mean_and_labels_per_method(bench):
    def run(method: str, seed: int, rmses: list[float]) -> dict[str, Any]:
        labels = [16, 22, 28, 34]
        return {
            "method": method,
            "seed": seed,
            "curve": [
                {"iteration": i, "labels": n, "force_rmse_eV_A": r, "force_rmse_beyond_eV_A": r}
                for i, (n, r) in enumerate(zip(labels, rmses, strict=True))
            ],
        }

    runs = [
        run("random", 0, [0.20, 0.12, 0.08, 0.06]),
        run("random", 1, [0.20, 0.10, 0.08, 0.04]),
        run("alflow", 0, [0.20, 0.06, 0.04, 0.03]),
        run("alflow", 1, [0.20, 0.04, 0.04, 0.03]),
    ]
    summary = bench.summarize(runs, target=None)
    assert summary["target_force_rmse_eV_A"] == pytest.approx(0.05)
    assert summary["labels_to_target"] == {"random": 34, "alflow": 22}
    assert summary["ratio_alflow_vs_random"] == pytest.approx(22 / 34)
    assert summary["seed_labels"] == 16
    assert summary["selected_labels_to_target"] == {"random": 18, "alflow": 6}
    assert summary["ratio_selected_alflow_vs_random"] == pytest.approx(6 / 18)
    assert summary["goal_met"] is False and summary["goal_met_selected"] is True
    mean = summary["curves"]["random"]["force_rmse_mean_eV_A"]
    assert mean == pytest.approx([0.20, 0.11, 0.08, 0.05])
    assert summary["curves"]["alflow"]["force_rmse_std_eV_A"][1] == pytest.approx(0.01)
    assert summary["curves"]["alflow"]["labels"] == [16, 22, 28, 34]
