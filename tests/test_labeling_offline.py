"""Recording offline label outcomes: idempotent, failures never overwrite a good label."""

from __future__ import annotations

import pytest
from ase.build import bulk

from alflow.config import CampaignConfig
from alflow.steps.label import record_label_outcome
from alflow.structures import structure_key

HASH = "p" * 16


@pytest.fixture
def store(new_store):
    config = CampaignConfig.model_validate(
        {
            "name": "offline-record",
            "initial": {"structures": [{"kind": "bulk", "symbol": "Cu", "a_A": 3.61}]},
        }
    )
    store = new_store()
    store.register_campaign(config)
    atoms = bulk("Cu", "fcc", a=3.61)
    key = structure_key(atoms)
    store.add_structures(
        "offline-record", [atoms], [key], iteration=1, status="selected", origins=[{}]
    )
    return store, key


def _ok(energy_eV: float) -> dict:
    label = {"energy_eV": energy_eV, "forces_eV_A": [[0.0, 0.0, 0.0]], "parameters_hash": HASH}
    return {"status": "ok", "label": label, "done_status": "labeled"}


def _failed(error: str) -> dict:
    return {"status": "failed", "failure": {"parameters_hash": HASH, "error": error}}


def test_ok_twice_stores_one_label(store) -> None:
    store, key = store
    assert record_label_outcome(store, "offline-record", 1, key, _ok(-1.0)) == "labeled"
    assert record_label_outcome(store, "offline-record", 1, key, _ok(-2.0)) == "labeled"
    (label,) = store.labels.find({"structure_key": key})
    assert label["energy_eV"] == -1.0 and label["ok"] and label["iteration"] == 1
    assert store.structure("offline-record", key)["label_id"] == label["_id"]


def test_failure_then_success_then_failure(store) -> None:
    store, key = store
    assert record_label_outcome(store, "offline-record", 1, key, _failed("scf")) == "failed"
    doc = store.structure("offline-record", key)
    assert doc["status"] == "failed" and doc["reason"] == "scf"
    assert record_label_outcome(store, "offline-record", 1, key, _failed("again")) == "failed"
    (label,) = store.labels.find({"structure_key": key})
    assert label["error"] == "again" and not label["ok"]
    assert record_label_outcome(store, "offline-record", 1, key, _ok(-3.0)) == "labeled"
    assert record_label_outcome(store, "offline-record", 1, key, _failed("late")) == "labeled"
    (label,) = store.labels.find({"structure_key": key})
    assert label["ok"] and label["energy_eV"] == -3.0


def test_rejection_is_a_status_with_reason(store) -> None:
    store, key = store
    outcome = {"status": "rejected", "reason": "atoms 0 and 1 are 0.5 Å apart"}
    assert record_label_outcome(store, "offline-record", 1, key, outcome) == "rejected"
    doc = store.structure("offline-record", key)
    assert doc["status"] == "rejected" and "apart" in doc["reason"]
    assert store.labels.count_documents({}) == 0
