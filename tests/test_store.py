"""The store on the embedded (mongomock) server: collections, indexes, GridFS, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from alflow.config import CampaignConfig
from alflow.errors import StoreError, TrainingError
from alflow.store import mask_uri, open_store
from alflow.store.connection import connect
from alflow.store.embedded import EmbeddedServer
from alflow.structures import atoms_from_doc, structure_key


def config(name: str = "c", **loop: int) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {"name": name, "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}, "loop": loop}
    )


def test_structures_roundtrip_and_first_sighting_wins(tmp_path: Path) -> None:
    conn, store = open_store(str(tmp_path / "s.bson"))
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
    conn.embedded.close()


def test_label_unique_on_key_and_parameters(tmp_path: Path) -> None:
    conn, store = open_store(str(tmp_path / "s.bson"))
    assert store.add_label("k", {"parameters_hash": "p", "energy_eV": 1.0, "ok": True})
    assert not store.add_label("k", {"parameters_hash": "p", "energy_eV": 2.0, "ok": True})
    assert store.label("k", "p")["energy_eV"] == 1.0
    assert store.add_label("k", {"parameters_hash": "q", "energy_eV": 3.0, "ok": True})
    conn.embedded.close()


def test_campaign_registration_is_idempotent_but_refuses_changes(tmp_path: Path) -> None:
    conn, store = open_store(str(tmp_path / "s.bson"))
    assert store.register_campaign(config())
    assert not store.register_campaign(config())
    with pytest.raises(StoreError, match="different configuration"):
        store.register_campaign(config(max_iterations=9))
    with pytest.raises(StoreError, match="no campaign 'zz'"):
        store.campaign("zz")
    conn.embedded.close()


def test_model_gridfs_sha256_and_tamper_refused(tmp_path: Path) -> None:
    conn, store = open_store(str(tmp_path / "s.bson"))
    model = tmp_path / "m.model"
    model.write_bytes(b"weights" * 100)
    model_id = store.put_model("c", 0, 1, model, {"seed": 1})
    fetched = store.fetch_model(model_id, tmp_path / "fetch")
    assert fetched.read_bytes() == model.read_bytes()
    store.models.update_one({"_id": model_id}, {"$set": {"sha256": "0" * 64}})
    with pytest.raises(TrainingError, match="tampered"):
        store.fetch_model(model_id, tmp_path / "fetch2")
    conn.embedded.close()


def test_embedded_state_persists_atomically_with_indexes(tmp_path: Path) -> None:
    path = tmp_path / "s.bson"
    conn, store = open_store(str(path))
    store.add_label("k", {"parameters_hash": "p", "energy_eV": 1.0, "ok": True})
    model = tmp_path / "m.model"
    model.write_bytes(bytes(range(256)) * 50)
    store.put_model("c", 0, 0, model, {})
    conn.save()
    conn.embedded.close()
    conn2, store2 = open_store(str(path))
    assert store2.label("k", "p")["energy_eV"] == 1.0
    assert not store2.add_label("k", {"parameters_hash": "p", "energy_eV": 5.0})  # index restored
    assert store2.fetch_model("c/it000/m00", tmp_path / "f").read_bytes() == model.read_bytes()
    conn2.embedded.close()
    assert not list(tmp_path.glob(".*.tmp"))


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.bson"
    first = EmbeddedServer(path)
    with pytest.raises(StoreError, match="in use by alflow process"):
        EmbeddedServer(path)
    reader = EmbeddedServer(path, writable=False)  # readers are fine
    with pytest.raises(StoreError, match="read-only"):
        reader.save()
    first.close()


def test_unreachable_mongodb_fails_fast_with_masked_password() -> None:
    uri = "mongodb://alice:s3cret@127.0.0.1:9/alflow"
    with pytest.raises(StoreError) as err:
        connect(uri, timeout_s=0.5)
    assert "s3cret" not in str(err.value)
    assert "alice:***@" in str(err.value)
    assert mask_uri(uri) == "mongodb://alice:***@127.0.0.1:9/alflow"


def test_missing_store_read_only(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no alflow store"):
        connect(str(tmp_path / "none.bson"), writable=False)


def test_training_frames_exclude_holdout_failed_and_changed_physics(tmp_path: Path) -> None:
    conn, store = open_store(str(tmp_path / "s.bson"))
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
    conn.embedded.close()
