"""The final fit of a two-element campaign (Cu3Au, EMT labels, real MACE): the campaign's result.

One small campaign is run with ``alflow run`` to its end. Its final fit is
checked as a user would: the record names the members and the labels, the
pair energy of every element pair rises monotonically from the shortest
distance in the training data down to 0.5 Å (the repulsion the committee
must have where it has no data), ``alflow status`` names the result, and a
second ``alflow run`` of the same file trains nothing again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.io import write

pytestmark = [pytest.mark.slow, pytest.mark.mace]

CAMPAIGN = {
    "name": "cu3au",
    "initial": {
        "structures": [{"kind": "file", "path": "cu3au.extxyz", "supercell": [2, 2, 2]}],
        "n_rattled": 4,
        "n_holdout": 2,
        "rattle_stdev_A": 0.08,
        "strain_max": 0.03,
    },
    "committee": {
        "members": 2,
        "model": {"channels": 16, "max_L": 0, "r_max_A": 4.5, "num_interactions": 2},
        "training": {"epochs": 12, "batch_size": 4, "lr": 0.01, "dtype": "float32"},
    },
    "exploration": {"walkers": 2, "temperatures_K": [600, 900], "steps": 60},
    "selection": {"max_per_iteration": 3},
    "labeling": {"oracle": {"code": "emt"}},
    "loop": {"max_iterations": 1, "max_dft_labels": 60},
    "final": {"epochs": 12, "validate_after": False},
}


def _alflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALFLOW_PARALLEL_PROCESSES": "2"}
    return subprocess.run(
        [sys.executable, "-m", "alflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("cu3au")
    cell = bulk("Cu", "fcc", a=3.75, cubic=True)
    cell[0].symbol = "Au"  # L1_2 Cu3Au
    write(work / "cu3au.extxyz", cell)
    (work / "campaign.yaml").write_text(yaml.safe_dump(CAMPAIGN))
    first = _alflow("run", "campaign.yaml", "--store", "store", cwd=work)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _alflow("run", "campaign.yaml", "--store", "store", cwd=work)
    status = _alflow("status", "--campaign", "cu3au", "--store", "store", cwd=work)
    status_json = _alflow("status", "--campaign", "cu3au", "--json", "--store", "store", cwd=work)
    return {"work": work, "first": first, "second": second, "status": status, "json": status_json}


def _committee_and_data(work: Path) -> tuple[Any, dict[tuple[str, str], float]]:
    import alflow
    from alflow.store import open_store
    from alflow.structures import shortest_pair_distances_A

    _, store = open_store(str(work / "store"), must_exist=True)
    record = store.final("cu3au")
    frames = store.labeled_frames("cu3au", record["parameters_hash"])
    return alflow.load_potential(store, "cu3au"), shortest_pair_distances_A(frames)


def test_final_fit_trains_on_every_label(finished: dict[str, Any]) -> None:
    from alflow.store import open_store

    _, store = open_store(str(finished["work"] / "store"), must_exist=True)
    record = store.final("cu3au")
    assert record["status"] == "trained", record
    assert record["members"] == ["cu3au/final/m00", "cu3au/final/m01"]
    labeled = store.labeled_frames("cu3au", record["parameters_hash"])
    assert record["n_labels"] == len(labeled)
    last = max(d["iteration"] for d in store.iteration_docs("cu3au"))
    assert any(a.info["iteration"] == last and a.info["origin_kind"] == "walker" for a in labeled)
    assert record["holdout_errors"]["n_frames"] > 0
    member = store.models.find_one({"_id": "cu3au/final/m00"})
    assert member["hyperparameters"]["training"]["epochs"] == 12
    assert member["repulsion"]["kind"] == "zbl"


def test_every_pair_repels_below_the_data(finished: dict[str, Any]) -> None:
    """For Cu-Cu, Au-Cu and Au-Au the energy rises from the shortest pair seen down to 0.5 Å."""
    from alflow.contacts import dimer

    calc, shortest_A = _committee_and_data(finished["work"])
    assert set(shortest_A) == {("Au", "Au"), ("Au", "Cu"), ("Cu", "Cu")}
    for a, b in combinations_with_replacement(["Au", "Cu"], 2):
        distances_A = np.arange(0.5, shortest_A[(a, b)], 0.01)
        energies_eV = []
        for r in distances_A:
            atoms = dimer(a, b, float(r), 6.0)
            atoms.calc = calc
            energies_eV.append(atoms.get_potential_energy())
        falls = np.flatnonzero(np.diff(energies_eV) >= 0)
        assert falls.size == 0, f"{a}-{b}: energy falls near {distances_A[falls[:3]]} Å"


def test_status_names_the_result(finished: dict[str, Any]) -> None:
    assert finished["status"].returncode == 0, finished["status"].stderr
    assert "result: final fit cu3au/final (2 members" in finished["status"].stdout
    report = json.loads(finished["json"].stdout)
    assert report["final"]["status"] == "trained"


def test_a_second_run_trains_nothing_again(finished: dict[str, Any]) -> None:
    second = finished["second"]
    assert second.returncode == 0, second.stderr[-3000:]
    assert " train " not in second.stderr and "final fit added" not in second.stderr
