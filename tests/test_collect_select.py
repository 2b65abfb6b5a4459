"""select_for_labeling + collect_iteration on the test server with synthetic documents.

Frames carry the documents the explore step writes (``uncertainty`` and
``committee`` from :class:`alflow.testing.FakeCommittee`); labels come from
the real label step with the EMT oracle.
"""

from __future__ import annotations

from typing import Any

import pytest
import step_helpers  # tests/ is on sys.path
from ase.build import bulk

from alflow.steps.collect import collect_iteration
from alflow.steps.label import label_structure
from alflow.steps.select import AUDIT_REASON, select_for_labeling
from alflow.testing import FakeCommittee

CAMPAIGN = "sel"


def make_ctx(
    store, tmp_path, selection: dict[str, Any] | None = None, loop: dict[str, Any] | None = None
):
    selection = {"descriptor": "rdf", **(selection or {})}
    return step_helpers.make_ctx(store, tmp_path, CAMPAIGN, selection, loop), None


def add_frames(ctx, iteration: int, n: int, stdev_A: float, noise_eV_A: float, seed: int = 0):
    """Explored frames with FakeCommittee uncertainty; return their keys."""
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        atoms.rattle(stdev_A, seed=1000 * iteration + 10 * seed + i)
        frames.append(atoms)
    committee = FakeCommittee(3, noise_eV_A=noise_eV_A, seed=seed)
    return step_helpers.store_explored(ctx, iteration, frames, committee)


def label_all(ctx, iteration: int, keys):
    for key in keys:
        label_structure(ctx, iteration, key)


def test_empty_candidate_set_ends_the_iteration_cleanly(tmp_path, new_store):
    ctx, _connection = make_ctx(new_store(), tmp_path)
    result = select_for_labeling(ctx, 0)
    assert result["selected"] == [] and result["audit"] == []
    decision = collect_iteration(ctx, 0)
    assert decision.go_on and decision.rule == "next"
    doc = ctx.store.iteration_docs(CAMPAIGN)[0]
    assert doc["selection"]["explored"] == 0
    assert doc["selection"]["thresholds"]["source"] == "fixed"
    assert doc["decision"] == {
        "go_on": True,
        "status": "running",
        "reason": "next iteration",
        "rule": "next",
    }
    assert doc["calibration_check"]["n"] == 0


def test_all_accurate_converges_without_labels(tmp_path, new_store):
    ctx, _connection = make_ctx(
        new_store(),
        tmp_path,
        selection={"trust_lo_eV_A": 5.0, "trust_hi_eV_A": 10.0, "audit_per_iteration": 0},
    )
    add_frames(ctx, 0, 4, stdev_A=0.02, noise_eV_A=0.01)
    result = select_for_labeling(ctx, 0, committee=FakeCommittee(3))
    assert result["selected"] == []
    assert result["counts"]["accurate"] == 4
    decision = collect_iteration(ctx, 0)
    assert (decision.go_on, decision.status, decision.rule) == (False, "converged", "converged")
    assert ctx.store.campaign(CAMPAIGN)["status"] == "converged"


def test_select_label_collect_with_audit_and_calibration_check(tmp_path, new_store):
    ctx, _connection = make_ctx(
        new_store(),
        tmp_path,
        selection={"trust_lo_eV_A": 0.08, "max_per_iteration": 6, "audit_per_iteration": 2},
    )
    keys = add_frames(ctx, 0, 6, stdev_A=0.01, noise_eV_A=0.002)
    keys += add_frames(ctx, 0, 8, stdev_A=0.1, noise_eV_A=0.03, seed=1)
    result = select_for_labeling(ctx, 0, committee=FakeCommittee(3))
    assert result["counts"]["accurate"] >= 2 and result["counts"]["candidate"] >= 4
    assert 0 < len(result["selected"]) <= 6
    assert len(result["audit"]) == 2 and set(result["audit"]) <= set(result["selected"])
    for key in result["audit"]:
        doc = ctx.store.structure(CAMPAIGN, key)
        assert (
            doc["status"] == "selected" and doc["audit"] is True and doc["reason"] == AUDIT_REASON
        )
    assert set(result["selected"]) <= set(keys)
    label_all(ctx, 0, result["selected"])
    decision = collect_iteration(ctx, 0)
    assert decision.go_on
    doc = ctx.store.iteration_docs(CAMPAIGN)[0]
    check = doc["calibration_check"]
    assert check["n"] == len(result["selected"])
    assert sum(check["audit"]) == 2
    assert doc["audit"] == 2
    assert doc["errors_audit"]["n_frames"] == 2
    assert doc["accurate_class"] == doc["accurate"] + 2
    assert doc["trust_lo_eV_A"] == 0.08 and doc["trust_source"] == "fixed"


def test_window_calibrates_once_enough_labels_exist(tmp_path, new_store):
    ctx, _connection = make_ctx(
        new_store(),
        tmp_path,
        selection={
            "trust_lo_eV_A": 0.02,
            "max_per_iteration": 30,
            "audit_per_iteration": 0,
            "calibration_min_points": 10,
            "calibration_min_spearman": 0.0,
            "target_force_error_eV_A": 0.1,
        },
    )
    # noise grows with the rattle: deviation and true error grow together
    keys = []
    for level, stdev in enumerate((0.02, 0.05, 0.1, 0.15)):
        keys += add_frames(ctx, 0, 4, stdev_A=stdev, noise_eV_A=0.01 + 0.02 * level, seed=level)
    first = select_for_labeling(ctx, 0, committee=FakeCommittee(3))
    assert first["thresholds"]["source"] == "fixed"
    label_all(ctx, 0, first["selected"])
    collect_iteration(ctx, 0)
    add_frames(ctx, 1, 4, stdev_A=0.05, noise_eV_A=0.02, seed=9)
    second = select_for_labeling(ctx, 1, committee=FakeCommittee(3))
    thresholds = second["thresholds"]
    assert thresholds["source"] == "calibrated", thresholds["reason"]
    assert thresholds["calibration"]["n_points"] == len(first["selected"]) >= 10
    assert thresholds["calibration"]["spearman"] > 0.0
    assert thresholds["hi"] == pytest.approx(10.0 * thresholds["lo"])
    doc = ctx.store.iteration_docs(CAMPAIGN)[1]
    assert doc["selection"]["thresholds"]["lo"] == thresholds["lo"]


def test_pending_frames_now_accurate_are_dropped(tmp_path, new_store):
    ctx, _connection = make_ctx(new_store(), tmp_path, selection={"audit_per_iteration": 0})
    keys = add_frames(ctx, 0, 3, stdev_A=0.05, noise_eV_A=0.05)
    ctx.store.set_status(CAMPAIGN, keys[:2], "selected")
    add_frames(ctx, 1, 2, stdev_A=0.05, noise_eV_A=0.05, seed=5)
    # a new committee with almost no disagreement: the queued frames became accurate
    result = select_for_labeling(ctx, 1, committee=FakeCommittee(3, noise_eV_A=1e-5))
    assert sorted(result["dropped_pending"]) == sorted(keys[:2])
    for key in keys[:2]:
        doc = ctx.store.structure(CAMPAIGN, key)
        assert doc["status"] == "rejected"
        assert doc["reason"].startswith("pending DFT dropped")
        assert doc["dropped_pending"]["by_iteration"] == 1
    assert ctx.store.structure(CAMPAIGN, keys[2])["status"] == "explored"
    pending = ctx.store.iteration_docs(CAMPAIGN)[0]["selection"]["pending"]
    assert pending == {"pending": 2, "rescored": 2, "dropped": 2}


def test_convergence_pools_the_last_iterations(tmp_path, new_store):
    ctx, _connection = make_ctx(
        new_store(),
        tmp_path,
        selection={"trust_lo_eV_A": 5.0, "trust_hi_eV_A": 10.0, "audit_per_iteration": 0},
        loop={"converged_window_iterations": 2},
    )
    add_frames(ctx, 0, 3, stdev_A=0.02, noise_eV_A=0.01)
    select_for_labeling(ctx, 0, committee=FakeCommittee(3))
    first = collect_iteration(ctx, 0)
    assert first.go_on, "one iteration is not a window of two"
    add_frames(ctx, 1, 3, stdev_A=0.02, noise_eV_A=0.01, seed=3)
    select_for_labeling(ctx, 1, committee=FakeCommittee(3))
    second = collect_iteration(ctx, 1)
    assert second.rule == "converged" and "last 2 iterations" in second.reason


def test_budget_and_iteration_limit_rules(tmp_path, new_store):
    ctx, _connection = make_ctx(
        new_store(), tmp_path, loop={"max_dft_labels": 1, "max_iterations": 5}
    )
    keys = add_frames(ctx, 0, 2, stdev_A=0.1, noise_eV_A=0.05)
    label_all(ctx, 0, keys[:1])
    assert collect_iteration(ctx, 0).rule == "dft_budget"
    ctx, _connection = make_ctx(new_store(), tmp_path / "b", loop={"max_iterations": 1})
    assert collect_iteration(ctx, 0).rule == "iteration_limit"


def test_a_crashed_label_job_is_recorded_as_a_failure(tmp_path, new_store):
    """FireWorks' fizzled label parents, read by the workflow, mark their frames failed."""
    from alflow.workflow.tasks import crashed_labels

    ctx, _connection = make_ctx(new_store(), tmp_path, selection={"audit_per_iteration": 0})
    keys = add_frames(ctx, 0, 3, stdev_A=0.15, noise_eV_A=0.2)
    ctx.store.set_status(CAMPAIGN, [keys[0]], "selected", reason="test")
    fw_spec = {
        "_fizzled_parents": [
            {
                "spec": {"structure_key": keys[0]},
                "launches": [
                    {
                        "action": {
                            "stored_data": {
                                "_exception": {
                                    "_stacktrace": "Traceback\nMemoryError: out of memory"
                                }
                            }
                        }
                    }
                ],
            },
            {"spec": {"structure_key": keys[1]}, "launches": []},  # not selected: left alone
        ]
    }
    crashed = crashed_labels(fw_spec)
    assert crashed == [
        (keys[0], "MemoryError: out of memory"),
        (keys[1], "unknown error (no launch record)"),
    ]
    collect_iteration(ctx, 0, crashed)
    failed = ctx.store.structure(CAMPAIGN, keys[0])
    assert failed["status"] == "failed"
    assert "labeling job crashed: MemoryError: out of memory" in str(failed.get("reason"))
    assert ctx.store.structure(CAMPAIGN, keys[1])["status"] == "explored"
