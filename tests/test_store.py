"""The store on the test server: collections, indexes, GridFS, restarts, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.build import bulk

from alflow.config import CampaignConfig
from alflow.errors import StoreError, TrainingError
from alflow.store import mask_uri, open_store
from alflow.store.connection import connect
from alflow.structures import atoms_from_doc, structure_key


def config(name: str = "c", **loop: int) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {"name": name, "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}, "loop": loop}
    )


def test_structures_roundtrip_and_first_sighting_wins(store: Any, tmp_path: Path) -> None:
    atoms = bulk("Cu", cubic=True)
    atoms.rattle(0.05, seed=1)
    key = structure_key(atoms)
    origin = [{"kind": "seed"}]
    assert (
        store.add_structures("c", [atoms], [key], iteration=0, status="seed", origins=origin) == 1
    )
    assert (
        store.add_structures("c", [atoms], [key], iteration=1, status="explored", origins=origin)
        == 0
    )
    doc = store.structure("c", key)
    assert doc["iteration"] == 0 and doc["formula"] == "Cu4"
    back = atoms_from_doc(doc["atoms"])
    np.testing.assert_allclose(back.positions, atoms.positions)
    assert structure_key(back) == key
    from pymatgen.core import Structure

    assert Structure.from_dict(doc["structure"]).composition.reduced_formula == "Cu"


def test_label_unique_on_key_and_parameters(store: Any, tmp_path: Path) -> None:
    assert store.add_label("k", {"parameters_hash": "p", "energy_eV": 1.0, "ok": True})
    assert not store.add_label("k", {"parameters_hash": "p", "energy_eV": 2.0, "ok": True})
    assert store.label("k", "p")["energy_eV"] == 1.0
    assert store.add_label("k", {"parameters_hash": "q", "energy_eV": 3.0, "ok": True})


def test_campaign_registration_is_idempotent_but_refuses_changes(
    store: Any, tmp_path: Path
) -> None:
    assert store.register_campaign(config())
    assert not store.register_campaign(config())
    with pytest.raises(StoreError, match="different configuration"):
        store.register_campaign(config(max_iterations=9))
    with pytest.raises(StoreError, match="no campaign 'zz'"):
        store.campaign("zz")


def test_model_gridfs_sha256_and_tamper_refused(store: Any, tmp_path: Path) -> None:
    model = tmp_path / "m.model"
    model.write_bytes(b"weights" * 100)
    model_id = store.put_model("c", 0, 1, model, {"seed": 1})
    fetched = store.fetch_model(model_id, tmp_path / "fetch")
    assert fetched.read_bytes() == model.read_bytes()
    store.models.update_one({"_id": model_id}, {"$set": {"sha256": "0" * 64}})
    with pytest.raises(TrainingError, match="tampered"):
        store.fetch_model(model_id, tmp_path / "fetch2")


def test_state_survives_a_server_restart_with_indexes(tmp_path: Path) -> None:
    from alflow.store.server import stop_server

    store_dir = tmp_path / "alflow-store"
    conn, store = open_store(str(store_dir))
    assert conn.local is not None and conn.uri.startswith("mongodb://127.0.0.1:")
    store.add_label("k", {"parameters_hash": "p", "energy_eV": 1.0, "ok": True})
    model = tmp_path / "m.model"
    model.write_bytes(bytes(range(256)) * 50)
    store.put_model("c", 0, 0, model, {})
    conn.client.close()
    assert stop_server(store_dir)
    conn2, store2 = open_store(str(store_dir))
    assert store2.label("k", "p")["energy_eV"] == 1.0
    assert not store2.add_label("k", {"parameters_hash": "p", "energy_eV": 5.0})  # index kept
    assert store2.fetch_model("c/it000/m00", tmp_path / "f").read_bytes() == model.read_bytes()
    conn2.client.close()
    stop_server(store_dir)


def test_unreachable_mongodb_fails_fast_with_masked_password() -> None:
    uri = "mongodb://alice:s3cret@127.0.0.1:9/alflow"
    with pytest.raises(StoreError) as err:
        connect(uri, timeout_s=0.5)
    assert "s3cret" not in str(err.value)
    assert "alice:***@" in str(err.value)
    assert mask_uri(uri) == "mongodb://alice:***@127.0.0.1:9/alflow"


def test_old_one_file_store_is_refused_with_the_import_command(tmp_path: Path) -> None:
    old = tmp_path / "alflow-store.bson"
    old.write_bytes(b"\x00" * 16)
    with pytest.raises(StoreError, match=r"alflow server import .*alflow-store.bson"):
        connect(str(old))


def test_training_frames_exclude_holdout_failed_and_changed_physics(
    store: Any, tmp_path: Path
) -> None:
    frames, keys = [], []
    for i in range(5):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
        keys.append(structure_key(atoms))
    statuses = ["seed", "labeled", "holdout", "labeled", "labeled"]
    for atoms, key, status in zip(frames, keys, statuses, strict=True):
        store.add_structures("c", [atoms], [key], iteration=0, status=status, origins=[{}])
    forces = np.zeros((4, 3)).tolist()
    for i, key in enumerate(keys):
        doc = {"parameters_hash": "p", "energy_eV": -1.0, "forces_eV_A": forces, "ok": i != 3}
        if i == 4:
            doc["parameters_effective_hash"] = "more-smearing"
        store.add_label(key, doc)
    training = {a.info["key"] for a in store.labeled_frames("c", "p")}
    assert training == {keys[0], keys[1]}
