"""alflow.query: filters on the server, round trips through exports, and ``alflow db``.

The fixture campaign lives in fresh databases of the test server (see
conftest.py); the CLI reads them through ``--store <uri>`` and
``ALFLOW_STORE_NAME``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from alflow.cli import main
from alflow.errors import ConfigError, StoreError
from alflow.query import StructureQuery, export_atoms, open_database, parse_range
from alflow.store import open_store
from alflow.structures import structure_key

HASH = "p1"


def _add(store: Any, campaign: str, atoms: Any, iteration: int, status: str, **kw: Any) -> str:
    """Write a structure (and its label) the way the loop's steps do."""
    key = structure_key(atoms)
    unc = kw.get("uncertainty_eV_A")
    extras = None
    if unc is not None:
        extras = [{"uncertainty": {"max_force_dev_eV_A": unc, "energy_std_eV": 0.01}}]
    origin = {"kind": "walker", "iteration": iteration} if unc is not None else {"kind": "seed"}
    store.add_structures(
        campaign,
        [atoms],
        [key],
        iteration=iteration,
        status=status,
        origins=[origin],
        extras=extras,
    )
    label = kw.get("label", "ok")
    if label is None:
        return key
    doc: dict[str, Any] = {
        "parameters_hash": HASH,
        "code": "emt",
        "campaign": campaign,
        "iteration": iteration,
        "wall_s": 36.0,
        "cores": 4,
        "host": "node1",
    }
    if label == "ok":
        calc_atoms = atoms.copy()
        calc_atoms.calc = EMT()
        doc.update(
            ok=True,
            energy_eV=calc_atoms.get_potential_energy(),
            forces_eV_A=calc_atoms.get_forces().tolist(),
            stress_eV_A3=calc_atoms.get_stress().tolist(),
        )
    else:
        doc.update(ok=False, error="SCF did not converge")
    store.add_label(key, doc)
    saved = store.label(key, HASH)
    store.set_status(campaign, [key], status, label_id=saved["_id"] if label == "ok" else None)
    return key


def fill(store: Any) -> None:
    """The fixture campaigns: 'cu' (9 structures, 8 labels, one failed) and 'alcu' (one seed)."""
    for i in range(3):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.05, seed=i)
        _add(store, "cu", atoms, 0, "seed")
    for i in range(4):
        atoms = bulk("Cu", cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.1, seed=10 + i)
        _add(store, "cu", atoms, 1, "labeled", uncertainty_eV_A=0.1 * (i + 1))
    atoms = bulk("Cu", cubic=True)
    atoms.rattle(0.2, seed=99)
    _add(store, "cu", atoms, 1, "failed", uncertainty_eV_A=0.5, label="failed")
    atoms = bulk("Cu", cubic=True)
    atoms.rattle(0.3, seed=98)
    _add(store, "cu", atoms, 1, "candidate", uncertainty_eV_A=0.25, label=None)
    alcu = bulk("Cu", cubic=True)
    alcu[0].symbol = "Al"
    alcu.rattle(0.05, seed=5)
    _add(store, "alcu", alcu, 0, "seed")


@pytest.fixture(scope="module")
def data(mongo_uri: str) -> Iterator[dict[str, str]]:
    """The fixture campaigns in a fresh database of the test server: its store and name."""
    import pymongo

    name = f"alflow_query_{uuid.uuid4().hex[:10]}"
    _, store = open_store(mongo_uri, db_name=name)
    fill(store)
    yield {"store": mongo_uri, "store_name": name}
    client: Any = pymongo.MongoClient(mongo_uri)
    client.drop_database(name)
    client.close()


@pytest.fixture(scope="module")
def db(data: dict[str, str]) -> Any:
    return open_database(data["store"], db_name=data["store_name"])


@pytest.fixture()
def cli_store(data: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--store <uri>`` for ``alflow db``, with the fixture's database name in the environment."""
    monkeypatch.setenv("ALFLOW_STORE_NAME", data["store_name"])
    return ["--store", data["store"]]


def keys(rows: Any) -> set[str]:
    return {r["key"] for r in rows}


# ---------------------------------------------------------------------- filters
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, 10),
        ({"campaign": "cu"}, 9),
        ({"campaign": "cu", "iteration": 1}, 6),
        ({"status": "labeled"}, 4),
        ({"status": ["seed", "failed"]}, 5),
        ({"status": "seed,failed"}, 5),
        ({"formula": "Cu"}, 9),
        ({"formula": "Cu4"}, 5),
        ({"formula": "Cu8"}, 4),
        ({"formula": "Cu3Al"}, 1),
        ({"elements": "Al,Cu"}, 1),
        ({"elements": ["Cu"]}, 10),
        ({"min_uncertainty_eV_A": 0.25}, 4),
        ({"max_uncertainty_eV_A": 0.2}, 2),
        ({"min_uncertainty_eV_A": 0.2, "max_uncertainty_eV_A": 0.31}, 3),
        ({"labeled_only": True}, 8),
        ({"min_energy_eV_per_atom": 0.1}, 4),
        ({"max_energy_eV_per_atom": 0.05}, 3),
        ({"campaign": "cu", "min_energy_eV_per_atom": 0.1, "max_uncertainty_eV_A": 0.2}, 2),
        ({"limit": 3}, 3),
        ({"status": "labeled", "limit": 0}, 4),
    ],
)
def test_each_filter(db: Any, filters: dict[str, Any], expected: int) -> None:
    rows = list(db.find(**filters))
    assert len(rows) == expected
    if "limit" not in filters:
        assert db.count(**filters) == expected
    for row in rows:
        if "status" in filters and isinstance(filters["status"], str):
            assert row["status"] in filters["status"].split(",")
        if "min_energy_eV_per_atom" in filters:
            assert row["energy_per_atom_eV"] >= filters["min_energy_eV_per_atom"]
        if "max_uncertainty_eV_A" in filters:
            assert row["max_force_dev_eV_A"] <= filters["max_uncertainty_eV_A"]


def test_energy_query_matches_a_scan_in_python(db: Any) -> None:
    """The server-side join (structures → labels, energy / n_atoms) against a plain scan."""
    expected = {}
    for doc in db.store.structures.find({"campaign": "cu", "label_id": {"$ne": None}}):
        label = db.store.labels.find_one({"_id": doc["label_id"]})
        energy = label["energy_eV"] / doc["n_atoms"]
        if label["ok"] and 0.0 <= energy <= 0.2:
            expected[doc["key"]] = energy
    assert 0 < len(expected) < 8, "the range keeps some labeled structures, not all"
    query = StructureQuery(campaign="cu", min_energy_eV_per_atom=0.0, max_energy_eV_per_atom=0.2)
    rows = list(db.find(query))
    assert {r["key"]: r["energy_per_atom_eV"] for r in rows} == pytest.approx(expected)
    assert db.count(query) == len(expected)
    assert {a.info["key"] for a in db.atoms(query)} == set(expected)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"status": "done"}, "unknown status 'done'"),
        ({"formula": "cu4"}, "malformed"),
        ({"formula": "Cu(OH)2"}, "malformed"),
        ({"formula": "Xx2"}, "unknown element 'Xx'"),
        ({"formula": "Cu0"}, "must be positive"),
        ({"elements": "Al,Qq"}, "unknown element symbol 'Qq'"),
        ({"min_uncertainty_eV_A": 0.5, "max_uncertainty_eV_A": 0.2}, "larger than maximum"),
        ({"min_uncertainty_eV_A": -1.0}, "negative"),
        ({"min_energy_eV_per_atom": -3.0, "max_energy_eV_per_atom": -4.0}, "eV/atom"),
        ({"iteration": -1}, "negative"),
        ({"limit": -5}, "limit"),
    ],
)
def test_bad_filters_are_clear_errors(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        StructureQuery(**filters)


def test_parse_range() -> None:
    assert parse_range("-4.2:-3.9", "r") == (-4.2, -3.9)
    assert parse_range(":1", "r") == (None, 1.0)
    assert parse_range("2:", "r") == (2.0, None)
    for bad in ("1", "a:b", "3:2", "1:2:3"):
        with pytest.raises(ConfigError):
            parse_range(bad, "r")


def test_unknown_campaign_lists_known(db: Any) -> None:
    with pytest.raises(StoreError, match=r"no campaign 'nope'.*alcu, cu"):
        list(db.find(campaign="nope"))


def test_filters_use_indexed_fields_only() -> None:
    query = StructureQuery(
        campaign="c", iteration=2, status="labeled", formula="AlCu3", elements="Al,Cu"
    )
    query = StructureQuery(
        **{**query.__dict__, "_formula_match": None, "min_uncertainty_eV_A": 0.1}
    )
    indexed = {"campaign", "iteration", "status", "reduced_formula", "formula", "elements"}
    indexed |= {"uncertainty.max_force_dev_eV_A", "label_id"}
    assert set(query.mongo_filter()) <= indexed
    assert query.mongo_filter()["reduced_formula"] == "AlCu3"


# ---------------------------------------------------------------------- round trips
def test_atoms_carry_labels_and_info(db: Any) -> None:
    frames = list(db.atoms(campaign="cu", status="labeled"))
    assert len(frames) == 4
    for atoms in frames:
        reference = atoms.copy()
        reference.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy())
        np.testing.assert_allclose(atoms.get_forces(), reference.get_forces())
        np.testing.assert_allclose(atoms.get_stress(), reference.get_stress())
        assert atoms.info["status"] == "labeled" and atoms.info["iteration"] == 1
        assert atoms.info["key"] == structure_key(atoms)
        assert 0.1 <= atoms.info["max_force_dev_eV_A"] <= 0.4
    unlabeled = next(db.atoms(status="candidate"))
    assert unlabeled.calc is None


def _same(a: Any, b: Any, exact: bool = True) -> None:
    check = np.testing.assert_array_equal if exact else np.testing.assert_allclose
    check(a.positions, b.positions)
    check(np.asarray(a.cell), np.asarray(b.cell))
    assert list(a.pbc) == list(b.pbc)
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    if a.calc is None:
        assert b.calc is None
        return
    assert a.get_potential_energy() == b.get_potential_energy()
    check(a.get_forces(), b.get_forces())
    check(a.get_stress(), b.get_stress())


def test_extxyz_roundtrip_exact(db: Any, tmp_path: Path) -> None:
    from ase.io import read

    frames = list(db.atoms())
    out = tmp_path / "all.xyz"
    assert export_atoms(iter(frames), out, "extxyz") == len(frames)
    back = read(out, index=":")
    assert len(back) == len(frames)
    for original, read_back in zip(frames, back, strict=True):
        _same(original, read_back, exact=True)
        assert read_back.info["key"] == original.info["key"]
        assert read_back.info["campaign"] == original.info["campaign"]
        if original.calc is not None:  # the keys mace-torch reads by default
            assert read_back.info["REF_energy"] == original.get_potential_energy()
            np.testing.assert_array_equal(read_back.arrays["REF_forces"], original.get_forces())
            np.testing.assert_array_equal(read_back.info["REF_stress"], original.get_stress())


def test_extxyz_partial_pbc_and_molecule(tmp_path: Path) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    slab = bulk("Cu", cubic=True)
    slab.pbc = (True, True, False)
    mol = molecule("H2O")
    mol.calc = SinglePointCalculator(mol, energy=-14.2, forces=np.ones((3, 3)) / 3)
    mol.info["campaign"] = 'we"ird name'
    export_atoms([slab, mol], tmp_path / "x.xyz", "extxyz")
    back = read(tmp_path / "x.xyz", index=":")
    _same(slab, back[0])
    assert back[1].get_potential_energy() == -14.2
    np.testing.assert_array_equal(back[1].get_forces(), np.ones((3, 3)) / 3)
    assert back[1].info["campaign"] == 'we"ird name'


def test_pymatgen_roundtrip(db: Any, tmp_path: Path) -> None:
    from pymatgen.core import Structure

    frames = list(db.atoms(campaign="cu"))
    out = tmp_path / "cu.json"
    export_atoms(iter(frames), out, "json")
    dicts = json.loads(out.read_text())
    assert len(dicts) == len(frames)
    for atoms, d in zip(frames, dicts, strict=True):
        structure = Structure.from_dict(d)
        np.testing.assert_allclose(structure.cart_coords, atoms.positions, rtol=0, atol=1e-12)
        np.testing.assert_allclose(structure.lattice.matrix, np.asarray(atoms.cell), atol=1e-14)
        assert structure.properties["key"] == atoms.info["key"]
        if atoms.calc is None:
            assert "energy_eV" not in structure.properties
            continue
        assert structure.properties["energy_eV"] == atoms.get_potential_energy()
        np.testing.assert_array_equal(structure.site_properties["forces_eV_A"], atoms.get_forces())
        np.testing.assert_array_equal(structure.properties["stress_eV_A3"], atoms.get_stress())
    in_memory = list(db.structures(campaign="cu", status="seed"))
    assert len(in_memory) == 3 and all(s.properties["status"] == "seed" for s in in_memory)


@pytest.mark.slow
def test_mace_reads_the_export(db: Any, tmp_path: Path) -> None:
    """mace-torch's own loader takes the file with its default keys (separate process)."""
    pytest.importorskip("mace", reason="mace-torch not installed")
    out = tmp_path / "train.xyz"
    export_atoms(db.atoms(labeled_only=True), out, "extxyz")
    script = (
        "import sys\nfrom mace.data.utils import KeySpecification, load_from_xyz\n"
        "_, configs = load_from_xyz(sys.argv[1], KeySpecification.from_defaults())\n"
        "c = configs[0]\n"
        "print(len(configs), c.properties['energy'], c.properties['forces'].shape,"
        " c.properties['stress'].shape)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    n, energy, *_ = run.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(n) == 8
    first = next(db.atoms(labeled_only=True))
    assert float(energy) == first.get_potential_energy()


# ---------------------------------------------------------------------- show, stats
def test_show_by_prefix_with_labels(db: Any) -> None:
    key = next(db.find(status="failed"))["key"]
    docs = db.show(key[:8])
    assert len(docs) == 1 and docs[0]["key"] == key
    assert docs[0]["labels"][0]["ok"] is False
    with pytest.raises(StoreError, match="no structure"):
        db.show("0" * 24)
    with pytest.raises(StoreError, match="not a structure key"):
        db.show("xyz!")


def test_stats_counts_and_core_hours(db: Any) -> None:
    stats = db.stats("cu")
    assert stats["per_status"] == {"candidate": 1, "failed": 1, "labeled": 4, "seed": 3}
    assert stats["per_iteration"] == {0: 3, 1: 6}
    assert stats["per_element"] == {"Cu": 9}
    assert (stats["labels_ok"], stats["labels_failed"]) == (7, 1)
    assert stats["dft_core_hours"] == pytest.approx(8 * 36.0 * 4 / 3600)
    assert db.stats()["per_element"] == {"Al": 1, "Cu": 10}


# ---------------------------------------------------------------------- CLI
def test_cli_find_table_and_json(cli_store: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "find", *cli_store, "--status", "labeled"]) == 0
    out = capsys.readouterr().out
    assert "KEY" in out and out.count(" labeled ") == 4 and "(4 structures)" in out
    argv = ["db", "find", *cli_store, "--formula", "Cu", "--json"]
    assert main([*argv, "--energy-range=0.1:", "--max-uncertainty", "0.35"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3
    assert all(r["energy_per_atom_eV"] >= 0.1 and r["max_force_dev_eV_A"] <= 0.35 for r in rows)


def test_cli_campaigns_show_stats_export(
    cli_store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = cli_store
    assert main(["db", "campaigns", *store]) == 0
    out = capsys.readouterr().out
    assert "alcu" in out and "cu" in out
    assert main(["db", "campaigns", *store, "--json"]) == 0
    assert {json.loads(x)["name"] for x in capsys.readouterr().out.splitlines()} == {"cu", "alcu"}
    assert main(["db", "find", *store, "--status", "failed", "--json"]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    assert main(["db", "show", key[:10], *store]) == 0
    out = capsys.readouterr().out
    assert key in out and "FAILED: SCF did not converge" in out
    assert main(["db", "stats", *store, "--campaign", "cu"]) == 0
    out = capsys.readouterr().out
    assert "0.32 core-hours" in out and "labeled=4" in out
    xyz = tmp_path / "train.xyz"
    assert main(["db", "export", str(xyz), "--format", "extxyz", *store, "--labeled-only"]) == 0
    assert "wrote 8 structures" in capsys.readouterr().out
    from ase.io import read

    assert len(read(xyz, index=":")) == 8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["db", "find", "--status", "finished"], "unknown status 'finished'"),
        (["db", "find", "--formula", "Cu-2"], "malformed"),
        (["db", "find", "--min-uncertainty", "0.4", "--max-uncertainty", "0.1"], "larger than"),
        (["db", "find", "--energy-range=2:1"], "larger than"),
        (["db", "find", "--energy-range", "abc"], "MIN:MAX"),
        (["db", "find", "--campaign", "nope"], "no campaign 'nope'"),
        (["db", "show", "ffffffff"], "no structure with key"),
    ],
)
def test_cli_errors_one_line_exit_2(
    cli_store: list[str], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([*argv, *cli_store]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alflow: error:") and message in err and "\n" not in err


def test_missing_store_is_an_error_not_a_new_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "none"
    assert main(["db", "stats", "--store", str(absent)]) == 2
    assert "no alflow store" in capsys.readouterr().err
    assert not absent.exists(), "a reader never creates a store directory"
    (tmp_path / "empty").mkdir()
    assert main(["db", "stats", "--store", str(tmp_path / "empty")]) == 2
    assert "no alflow store" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == []
    old = tmp_path / "alflow-store.bson"
    old.write_bytes(b"alflow-embedded-store")
    assert main(["db", "find", "--store", str(old)]) == 2
    assert "alflow server import" in capsys.readouterr().err


def test_unreachable_uri_is_quick_and_masked(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    uri = "mongodb://u:secret@127.0.0.1:9/"
    started = time.perf_counter()
    code = main(["-vv", "db", "find", "--store", uri, "--timeout-s", "0.5"])
    assert time.perf_counter() - started < 5
    captured = capsys.readouterr()
    assert code == 2
    assert "cannot reach MongoDB" in captured.err and "u:***@127.0.0.1" in captured.err
    assert "secret" not in captured.err + captured.out + caplog.text


def test_readers_see_writes_at_once_and_write_nothing(
    store: Any, server_settings: Any, mongo_uri: str
) -> None:
    """A writer goes on writing while a reader is open: the reader sees each write, saves nothing."""
    import pymongo

    fill(store)
    reader = open_database(mongo_uri, db_name=server_settings.store_name)
    assert reader.count(campaign="cu") == 9
    atoms = bulk("Cu", cubic=True)
    atoms.rattle(0.4, seed=7)
    _add(store, "cu", atoms, 2, "candidate", uncertainty_eV_A=0.3, label=None)
    assert reader.count(campaign="cu") == 10  # no save, no reload
    assert reader.stats("cu")["per_iteration"] == {0: 3, 1: 6, 2: 1}

    client: Any = pymongo.MongoClient(mongo_uri)
    fresh = client[f"{server_settings.store_name}_empty"]
    fresh["structures"].insert_one({"key": "ab", "campaign": "x"})  # a bare collection
    before = sorted(fresh["structures"].index_information())
    empty = open_database(mongo_uri, db_name=fresh.name)
    assert empty.stats()["n_structures"] == 1 and empty.campaigns()[0]["name"] == "x"
    assert list(empty.find(campaign="x", min_energy_eV_per_atom=0.0)) == []
    assert sorted(fresh["structures"].index_information()) == before, "readers create no index"
    assert fresh.list_collection_names() == ["structures"], "readers create no collection"
    client.drop_database(fresh.name)
    client.close()


def test_queries_run_on_the_servers_indexes(db: Any, data: dict[str, str]) -> None:
    """The same filters pushed down to the server, and its planner uses the indexes."""
    assert db.count(campaign="cu", status="labeled") == 4
    assert len(list(db.find(min_energy_eV_per_atom=0.1))) == 4
    assert db.stats("cu")["per_status"] == {"candidate": 1, "failed": 1, "labeled": 4, "seed": 3}
    structures = db.store.structures
    for flt in (
        {"formula": "Cu8"},
        {"campaign": "cu", "reduced_formula": "Cu"},
        {"key": {"$gte": "ab", "$lt": "abg"}},  # what 'db show PREFIX' sends
        StructureQuery(campaign="cu", iteration=1, status="labeled").mongo_filter(),
    ):
        plan = structures.find(flt).explain()
        assert "IXSCAN" in json.dumps(plan, default=str), flt
