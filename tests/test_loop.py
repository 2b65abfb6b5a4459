"""The whole loop through FireWorks on the embedded store: real MACE, EMT labels.

One campaign run is shared by the tests of this module: it is started with
``alflow run``, killed with SIGKILL in the middle of iteration 1, and resumed
with the same command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CAMPAIGN = REPO / "workflows" / "quickstart-emt.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.mace]


def _alflow(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "alflow.cli", *args]


def _snapshot(store_path: Path) -> dict[str, Any]:
    """Labels in the saved store file, read through a read-only embedded server."""
    from alflow.store.embedded import EmbeddedServer

    server = EmbeddedServer(store_path, writable=False)
    labels = {
        (d["structure_key"], d["parameters_hash"]): (d["created"], d["energy_eV"])
        for d in server.client["alflow"]["labels"].find()
    }
    server.close()
    return labels


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("loop")
    shutil.copy(CAMPAIGN, work / "campaign.yaml")
    store = work / "store.bson"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = _alflow("run", "campaign.yaml", "--store", str(store), cwd=work)
    process = subprocess.Popen(
        command, cwd=work, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    log_before: list[str] = []
    killed = False
    deadline = time.monotonic() + 900
    assert process.stderr is not None
    for line in process.stderr:
        log_before.append(line)
        if " it1 label " in line and "COMPLETED" in line:
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        assert time.monotonic() < deadline, "campaign did not reach iteration 1 in time"
    process.wait(timeout=60)
    assert killed, "".join(log_before[-30:])
    labels_before = _snapshot(store)

    resumed = subprocess.run(
        command, cwd=work, capture_output=True, text=True, env=env, timeout=1200
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    status = subprocess.run(
        _alflow(
            "status", "--store", str(store), "--json", "--campaign", "quickstart-emt", cwd=work
        ),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    return {
        "work": work,
        "store": store,
        "labels_before": labels_before,
        "labels_after": _snapshot(store),
        "resume_log": resumed.stderr,
        "status": json.loads(status.stdout),
    }


def _open(store: Path) -> Any:
    from alflow.store.embedded import EmbeddedServer

    return EmbeddedServer(store, writable=False)


def test_campaign_runs_at_least_three_iterations_all_completed(
    campaign_run: dict[str, Any],
) -> None:
    server = _open(campaign_run["store"])
    try:
        workflows = list(
            server.client["fireworks"]["workflows"].find({"metadata.campaign": "quickstart-emt"})
        )
        iterations = sorted(wf["metadata"]["iteration"] for wf in workflows)
        assert iterations == list(range(len(iterations))) and len(iterations) >= 3
        assert all(wf["state"] == "COMPLETED" for wf in workflows), [
            (w["name"], w["state"]) for w in workflows
        ]
        assert (
            server.client["alflow"]["iterations"].count_documents({"campaign": "quickstart-emt"})
            >= 3
        )
    finally:
        server.close()


def test_no_label_lost_or_computed_twice_across_kill(campaign_run: dict[str, Any]) -> None:
    before, after = campaign_run["labels_before"], campaign_run["labels_after"]
    assert before, "the kill happened before any label was saved"
    for key, (created, energy) in before.items():
        assert key in after, f"label {key} lost"
        assert after[key] == (created, energy), f"label {key} recomputed"
    assert len(after) > len(before)


def test_labeled_frames_carry_provenance(campaign_run: dict[str, Any]) -> None:
    server = _open(campaign_run["store"])
    try:
        db = server.client["alflow"]
        labeled = list(db["structures"].find({"campaign": "quickstart-emt", "status": "labeled"}))
        assert labeled
        for doc in labeled:
            origin = doc["origin"]
            for field in ("iteration", "walker", "step", "temperature_K", "model_ids"):
                assert field in origin, field
            assert len(origin["model_ids"]) == 3
            assert doc["uncertainty"]["max_force_dev_eV_A"] > 0
            label = db["labels"].find_one({"structure_key": doc["key"], "ok": True})
            assert label is not None and len(label["forces_eV_A"]) == doc["n_atoms"]
            scratch = campaign_run["work"] / "alflow-scratch" / "quickstart-emt" / "dft"
            assert Path(label["workdir"]).parent == scratch
        seeds = db["structures"].count_documents({"campaign": "quickstart-emt", "status": "seed"})
        assert seeds == 6
        holdout = db["structures"].count_documents(
            {"campaign": "quickstart-emt", "status": "holdout"}
        )
        assert holdout == 4
        models = db["models"].count_documents({"campaign": "quickstart-emt", "status": "trained"})
        assert models >= 9
    finally:
        server.close()


def test_walkers_and_members_computed_side_by_side(campaign_run: dict[str, Any]) -> None:
    log = campaign_run["resume_log"]
    assert "Traceback" not in log  # e.g. FireWorks' ping thread racing the embedded server
    assert "Fireworks side by side" in log
    assert "(same inputs)" in log


def test_status_json_reports_iterations(campaign_run: dict[str, Any]) -> None:
    report = campaign_run["status"]
    assert report["status"] in ("converged", "stopped")
    assert len(report["iterations"]) >= 3
    first = report["iterations"][0]
    for field in (
        "explored",
        "accurate",
        "candidate",
        "labeled",
        "failed",
        "trust_lo_eV_A",
        "errors",
    ):
        assert field in first
    assert report["labels_spent"] >= 10  # 6 seeds, 4 held out, then selected frames
    for iteration in report["iterations"]:
        holdout = iteration["holdout_errors"]
        assert holdout["n_frames"] == 4 and holdout["force_rmse_eV_A"] > 0
