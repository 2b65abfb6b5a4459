"""The whole loop through FireWorks workers on a local server: real MACE, EMT labels.

One campaign run is shared by the tests of this module: it is started with
``alflow run`` (a store directory: the run starts its local server), killed
with SIGKILL in the middle of iteration 1's training (its workers die with
it, two members are left RUNNING), and resumed with the same command.
"""

from __future__ import annotations

import itertools
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


def _client(store_dir: Path) -> Any:
    """A pymongo client of the store directory's local server (started if needed)."""
    from alflow.store import connect

    return connect(str(store_dir)).client


def _snapshot(store_dir: Path) -> dict[str, Any]:
    """Labels on the server now."""
    return {
        (d["structure_key"], d["parameters_hash"]): (d["created"], d["energy_eV"])
        for d in _client(store_dir)["alflow"]["labels"].find()
    }


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("loop")
    shutil.copy(CAMPAIGN, work / "campaign.yaml")
    store = work / "alflow-store"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = _alflow("run", "campaign.yaml", "--store", str(store), cwd=work)
    process = subprocess.Popen(
        command, cwd=work, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    log_before: list[str] = []
    readers: dict[str, subprocess.CompletedProcess[str]] = {}
    killed = False
    deadline = time.monotonic() + 900
    assert process.stderr is not None
    for line in process.stderr:
        log_before.append(line)
        if " it0 md " in line and not readers:  # read from other processes while it runs
            for name, args in (
                ("status", ("status", "--json", "--campaign", "quickstart-emt")),
                ("find", ("db", "find", "--campaign", "quickstart-emt", "--json")),
            ):
                readers[name] = subprocess.run(
                    _alflow(*args, "--store", str(store), cwd=work),
                    cwd=work,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
        if " it1 train " in line and "COMPLETED" in line:
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        assert time.monotonic() < deadline, "campaign did not reach iteration 1 in time"
    process.wait(timeout=60)
    assert killed, "".join(log_before[-30:])
    labels_before = _snapshot(store)  # the server outlived the runner
    left_running = _client(store)["fireworks"]["fireworks"].count_documents({"state": "RUNNING"})

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
        "left_running": left_running,
        "readers": readers,
        "labels_after": _snapshot(store),
        "resume_log": resumed.stderr,
        "status": json.loads(status.stdout),
    }


def test_campaign_runs_at_least_three_iterations_all_completed(
    campaign_run: dict[str, Any],
) -> None:
    client = _client(campaign_run["store"])
    workflows = list(client["fireworks"]["workflows"].find({"metadata.campaign": "quickstart-emt"}))
    stages = [wf["metadata"]["iteration"] for wf in workflows]
    iterations = sorted(i for i in stages if i != "final")
    assert iterations == list(range(len(iterations))) and len(iterations) >= 3
    assert stages.count("final") == 1  # the final fit, added once across the kill
    assert all(wf["state"] == "COMPLETED" for wf in workflows), [
        (w["name"], w["state"]) for w in workflows
    ]
    assert client["alflow"]["iterations"].count_documents({"campaign": "quickstart-emt"}) >= 3
    not_done = client["fireworks"]["fireworks"].count_documents({"state": {"$ne": "COMPLETED"}})
    assert not_done == 0


def test_no_label_lost_or_computed_twice_across_kill(campaign_run: dict[str, Any]) -> None:
    before, after = campaign_run["labels_before"], campaign_run["labels_after"]
    assert before, "the kill happened before any label was saved"
    for key, (created, energy) in before.items():
        assert key in after, f"label {key} lost"
        assert after[key] == (created, energy), f"label {key} recomputed"
    assert len(after) > len(before)


def test_labeled_frames_carry_provenance(campaign_run: dict[str, Any]) -> None:
    client = _client(campaign_run["store"])
    db = client["alflow"]
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
    seeds = db["structures"].count_documents({"campaign": "quickstart-emt", "origin.kind": "seed"})
    assert seeds == 6
    # 4 Cu2 dimers and 2 squeezed-pair copies, labeled before iteration 0 like the seeds
    short = {"campaign": "quickstart-emt", "origin.kind": "short_range", "status": "seed"}
    assert db["structures"].count_documents(short) == 6
    holdout = db["structures"].count_documents({"campaign": "quickstart-emt", "status": "holdout"})
    assert holdout == 4
    models = db["models"].count_documents({"campaign": "quickstart-emt", "status": "trained"})
    assert models >= 9


def _overlap(launches: list[dict[str, Any]]) -> bool:
    spans = sorted((launch["time_start"], launch["time_end"]) for launch in launches)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_walkers_and_members_run_side_by_side_and_lost_runs_recovered(
    campaign_run: dict[str, Any],
) -> None:
    log = campaign_run["resume_log"]
    assert "Traceback" not in log
    assert campaign_run["left_running"] >= 1  # the kill left members training
    assert "lost runs (worker gone) rerun" in log
    db = _client(campaign_run["store"])["fireworks"]
    for step in ("train", "explore"):
        for iteration in (0, 2):
            fw_ids = [
                fw["fw_id"]
                for fw in db["fireworks"].find(
                    {"spec.step": step, "spec.iteration": iteration}, {"fw_id": 1}
                )
            ]
            launches = list(db["launches"].find({"fw_id": {"$in": fw_ids}, "state": "COMPLETED"}))
            assert _overlap(launches), (step, iteration)


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


def test_readers_succeed_while_the_campaign_runs(campaign_run: dict[str, Any]) -> None:
    readers = campaign_run["readers"]
    assert set(readers) == {"status", "find"}
    for name, result in readers.items():
        assert result.returncode == 0, (name, result.stderr)
        assert "lock" not in result.stderr and "in use" not in result.stderr
    assert json.loads(readers["status"].stdout)["campaign"] == "quickstart-emt"
    assert [json.loads(line) for line in readers["find"].stdout.splitlines() if line.strip()]


def _lpad_webgui_page(work: Path) -> str:
    """The front page of FireWorks' own `lpad webgui` (server mode) on the campaign's server."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["lpad", "-l", "my_launchpad.yaml", "webgui", "-s", "--port", str(port)]
    gui = subprocess.Popen(
        command,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    return page.read().decode()
            except OSError:
                assert time.monotonic() < deadline and gui.poll() is None, (
                    "lpad webgui did not serve"
                )
                time.sleep(0.5)
    finally:
        os.killpg(gui.pid, signal.SIGKILL)
        gui.wait()


def test_a_finished_campaign_is_a_cluster_campaign(campaign_run: dict[str, Any]) -> None:
    """`alflow server start`'s URI, `lpad get_wflows` and `lpad webgui` read what it wrote."""
    work = campaign_run["work"]

    def alflow(*args: str) -> str:
        result = subprocess.run(
            _alflow(*args, cwd=work), cwd=work, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    uri = alflow("server", "start", "--store", "alflow-store").strip().splitlines()[-1]
    try:
        import pymongo

        client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
        labels = client["alflow"]["labels"].count_documents({})
        assert labels == len(campaign_run["labels_after"]) >= campaign_run["status"]["labels_spent"]
        alflow("server", "launchpad", "--store", "alflow-store", "--out", "my_launchpad.yaml")
        count = subprocess.run(
            ["lpad", "-l", "my_launchpad.yaml", "get_wflows", "-d", "count"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert count.returncode == 0, count.stderr
        workflows = client["fireworks"]["workflows"].count_documents({})
        assert int(count.stdout.strip().splitlines()[-1]) == workflows >= 3
        client.close()
        assert "quickstart-emt iteration 2" in _lpad_webgui_page(work)
    finally:
        alflow("server", "stop", "--store", "alflow-store")


def _final_store(campaign_run: dict[str, Any]) -> Any:
    from alflow.store import open_store

    return open_store(str(campaign_run["store"]), must_exist=True)[1]


def test_final_fit_is_the_result_and_repels_below_the_data(campaign_run: dict[str, Any]) -> None:
    """The final committee saw every label, and Cu2 repels from the data's closest pair to 0.5 Å."""
    import numpy as np

    import alflow
    from alflow.contacts import dimer
    from alflow.structures import shortest_pair_distances_A

    store = _final_store(campaign_run)
    record = store.final("quickstart-emt")
    assert record["status"] == "trained" and record["n_members"] == 3, record
    frames = store.labeled_frames("quickstart-emt", record["parameters_hash"])
    assert record["n_labels"] == len(frames)
    assert campaign_run["status"]["final"]["status"] == "trained"
    shortest_A = shortest_pair_distances_A(frames)[("Cu", "Cu")]
    calc = alflow.load_potential(store, "quickstart-emt")
    energies_eV = []
    for r in np.arange(0.5, shortest_A, 0.01):
        atoms = dimer("Cu", "Cu", float(r), 6.0)
        atoms.calc = calc
        energies_eV.append(atoms.get_potential_energy())
    assert np.all(np.diff(energies_eV) < 0), "the pair energy falls below the data"


def test_export_loads_in_mace_and_matches_the_committee(
    campaign_run: dict[str, Any], tmp_path: Path
) -> None:
    import hashlib

    from ase.io import read
    from mace.calculators import MACECalculator

    import alflow

    out = tmp_path / "potential"
    export = subprocess.run(
        _alflow(
            "model",
            "export",
            "--campaign",
            "quickstart-emt",
            "--out",
            str(out),
            "--store",
            str(campaign_run["store"]),
            cwd=tmp_path,
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    card = json.loads((out / "model_card.json").read_text())
    for name, digest in card["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest["sha256"], name
    models = sorted(str(p) for p in out.glob("member*.model"))
    assert len(models) == 3 and list(out.glob("member*.model-lammps.pt"))
    mace = MACECalculator(model_paths=models, device="cpu", default_dtype="float32")
    committee = alflow.load_potential(_final_store(campaign_run), "quickstart-emt")
    frames = [
        a for a in read(out / "train.xyz", ":") if a.info.get("config_type") != "IsolatedAtom"
    ]
    assert len(frames) == card["training_data"]["n_labels"]
    for atoms in frames[:8]:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = mace, committee
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-4)


def test_validation_ran_after_the_final_fit(campaign_run: dict[str, Any]) -> None:
    validation = _final_store(campaign_run).validation("quickstart-emt")
    assert validation is not None
    assert {"dimers", "eos", "md_stability", "holdout", "transfer"} <= set(validation)
    assert validation["md_stability"]["steps_per_s"] > 0
