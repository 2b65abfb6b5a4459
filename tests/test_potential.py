"""``alflow model export``: the final committee as a directory that MACE, alflow and LAMMPS load.

One module-scoped campaign gets a real final fit through the steps (EMT
labels of 10 rattled 32-atom Cu cells and 2 held-out ones, isolated-atom
E0s, two tiny MACE members trained side by side, ``finalize_fit``), and is
exported once through the CLI; the tests read that export, or tamper with
copies of it, or with the store (and put the store back).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.io import read

from alflow.config import CampaignConfig
from alflow.errors import TrainingError
from alflow.store.store import FINAL
from alflow.testing import copper_frames

HAS_MACE = bool(importlib.util.find_spec("mace") and importlib.util.find_spec("torch"))
pytestmark = [
    pytest.mark.mace,
    pytest.mark.slow,  # the final fit (~20 s) and one export with LAMMPS forms (~15 s)
    pytest.mark.skipif(not HAS_MACE, reason="mace-torch/torch not installed"),
]

CAMPAIGN = "cu-export"


def config(name: str = CAMPAIGN) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": name,
            "description": "tiny Cu committee for the export tests",
            "initial": {"structures": [{"kind": "bulk", "symbol": "Cu", "cubic": True}]},
            "committee": {
                "members": 2,
                "model": {
                    "channels": 8,
                    "max_L": 0,
                    "r_max_A": 4.0,
                    "num_interactions": 2,
                    "correlation": 2,
                },
                "training": {"epochs": 3, "batch_size": 4, "valid_fraction": 0.2},
            },
            "final": {"epochs": 3, "validate_after": False},
        }
    )


@dataclass(frozen=True)
class Fitted:
    store: Any
    uri: str
    db_name: str
    record: dict[str, Any]
    export_dir: Path
    stdout: str


def _label_campaign(ctx: Any) -> None:
    """Seed and held-out frames labeled by the campaign's EMT, and the E0s."""
    from alflow.steps.label import label_structure, reference_energies
    from alflow.structures import structure_key

    for status, frames in (("seed", copper_frames(10, seed=1)), ("holdout", copper_frames(2, 7))):
        for atoms in frames:
            atoms.calc = None
        keys = [structure_key(a) for a in frames]
        origins = [{"kind": status, "iteration": 0, "index": i} for i in range(len(frames))]
        ctx.store.add_structures(
            ctx.campaign, frames, keys, iteration=0, status=status, origins=origins
        )
        for key in keys:
            label_structure(ctx, 0, key)
    reference_energies(ctx, ["Cu"])


def _final_fit(store: Any, settings: Any, root: Path) -> dict[str, Any]:
    """Train the final members side by side and record the fit, as the final Workflow does."""
    from alflow.steps.context import StepContext
    from alflow.steps.final import finalize_fit
    from alflow.steps.train import train_committee_member

    cfg = config()
    store.register_campaign(cfg)
    ctx = StepContext(store, cfg, settings, root / "labels")
    _label_campaign(ctx)
    store.put_iteration(
        CAMPAIGN, 0, {"trust_lo_eV_A": 0.04, "trust_hi_eV_A": 0.4, "trust_source": "calibrated"}
    )
    contexts = [StepContext(store, cfg, settings, root / f"final{m}") for m in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda m: train_committee_member(contexts[m], FINAL, m), range(2)))
    store.set_campaign_status(CAMPAIGN, "stopped", "iteration limit reached (1)")
    store.put_validation(CAMPAIGN, {"summary": {"md_stability": "stable", "dimers_ok": True}})
    return finalize_fit(StepContext(store, cfg, settings, root / "finalize"))


def run_cli(argv: Sequence[str], capsys: Any = None) -> tuple[int, str, str]:
    """``alflow.cli.main(argv)`` → (return code, stdout, stderr).

    ``alflow model`` is added to alflow's parser if cli.py does not register it yet.
    """
    from alflow import cli
    from alflow.potential.commands import register

    build = cli.build_parser

    def parser_with_model() -> argparse.ArgumentParser:
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "model" not in sub.choices:
            register(sub)
        return parser

    cli.build_parser = parser_with_model
    try:
        code = cli.main(list(argv))
    finally:
        cli.build_parser = build
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


@pytest.fixture(scope="module")
def fitted(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fitted]:
    import pymongo

    from alflow.settings import Settings
    from alflow.store import open_store

    root = tmp_path_factory.mktemp("potential")
    db_name = f"alflow_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        store=mongo_uri, store_name=db_name, scratch_dir=str(root / "scratch"), torch_threads=1
    )
    _, store = open_store(mongo_uri, db_name=db_name)
    record = _final_fit(store, settings, root)
    assert record["status"] == "trained", record
    export_dir = root / "export" / "cu-potential"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setenv("ALFLOW_STORE_NAME", db_name)
        code, _, _ = run_cli(
            [
                "model",
                "export",
                "--campaign",
                CAMPAIGN,
                "--out",
                str(export_dir),
                "--store",
                mongo_uri,
            ]
        )
    assert code == 0, stdout.getvalue()
    yield Fitted(store, mongo_uri, db_name, record, export_dir, stdout.getvalue())
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_uri)
    client.drop_database(db_name)
    client.close()


@pytest.fixture
def cli(fitted: Fitted, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``alflow ARGS --store URI`` on the fitted store → (code, stdout, stderr)."""
    monkeypatch.setenv("ALFLOW_STORE_NAME", fitted.db_name)
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, str, str]:
        return run_cli([*argv, "--store", fitted.uri], capsys)

    return run


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def card(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "model_card.json").read_text())


def test_export_writes_every_file_with_its_hash(fitted: Fitted) -> None:
    out = fitted.export_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["e0s.json", "model_card.json", "model_card.md", "train.xyz"]
        + [f"member0{m}.model{s}" for m in range(2) for s in ("", "-lammps.pt")]
    )
    data = card(out)
    assert set(data["files"]) == set(names) - {"model_card.json", "model_card.md"}
    for name, entry in data["files"].items():
        assert sha256(out / name) == entry["sha256"], name
        assert (out / name).stat().st_size == entry["size_bytes"]
    models = fitted.store.trained_models(CAMPAIGN, FINAL)
    for member, model in zip(data["members"], models, strict=True):
        assert member["id"] == model["_id"] and member["sha256"] == model["sha256"]
        assert member["lammps"]["file"] == member["file"] + "-lammps.pt"
        assert member["seed"] == model["seed"] and member["hyperparameters"]["argv"]
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no staging left
    lines = fitted.stdout.splitlines()
    assert lines[0] == f"wrote {out} (campaign '{CAMPAIGN}')"
    assert lines[-1] == f"model card: {out / 'model_card.md'}"
    for name in names:
        assert any(line.split()[-1] == name and "B" in line for line in lines[1:-1]), name


def test_model_card_says_what_the_potential_is(fitted: Fitted) -> None:
    data, record = card(fitted.export_dir), fitted.record
    assert data["potential"]["elements"] == ["Cu"]
    assert data["potential"]["r_max_A"] == pytest.approx(4.0)
    assert data["potential"]["n_members"] == 2
    assert data["hyperparameters"]["model"]["channels"] == 8
    assert data["training_data"]["n_labels"] == record["n_labels"] == 10
    assert data["training_data"]["training_set_sha256"] == record["training_set_sha256"]
    assert data["reference_method"]["code"] == "emt"
    assert data["reference_method"]["parameters_hash"] == record["parameters_hash"]
    assert data["holdout_errors"] == record["holdout_errors"]
    assert data["holdout_errors"]["n_frames"] == 2
    assert data["validation"]["summary"] == {"md_stability": "stable", "dimers_ok": True}
    assert data["trust_window"]["trust_source"] == "calibrated"
    assert data["trust_window"]["trust_hi_eV_A"] == pytest.approx(0.4)
    assert data["versions"]["mace-torch"] and data["versions"]["torch"]
    models = fitted.store.trained_models(CAMPAIGN, FINAL)
    assert data["repulsion"] == models[0].get("repulsion")  # (None where training records none)
    reference = fitted.store.reference_energies(record["parameters_hash"])
    assert data["e0s"] == {"file": "e0s.json", "source": "isolated-atom", "eV": reference}
    assert json.loads((fitted.export_dir / "e0s.json").read_text()) == {"29": reference["Cu"]}
    text = (fitted.export_dir / "model_card.md").read_text()
    assert "MACECalculator(model_paths=" in text
    assert "pair_coeff * * member00.model-lammps.pt Cu" in text
    assert record["training_set_sha256"][:16] in text


def test_train_xyz_holds_the_labels_and_e0s_as_mace_reads_them(fitted: Fitted) -> None:
    frames = read(fitted.export_dir / "train.xyz", index=":")
    isolated = [a for a in frames if a.info.get("config_type") == "IsolatedAtom"]
    labeled = [a for a in frames if a.info.get("config_type") != "IsolatedAtom"]
    assert len(isolated) == 1 and len(isolated[0]) == 1
    energy = fitted.store.reference_energies(fitted.record["parameters_hash"])["Cu"]
    assert isolated[0].info["REF_energy"] == pytest.approx(energy)
    stored = fitted.store.labeled_frames(CAMPAIGN, fitted.record["parameters_hash"])
    assert [a.info["alflow_key"] for a in labeled] == [a.info["key"] for a in stored]
    for mine, theirs in zip(labeled, stored, strict=True):
        assert mine.info["REF_energy"] == pytest.approx(theirs.get_potential_energy())
        np.testing.assert_allclose(mine.arrays["REF_forces"], theirs.get_forces(), atol=1e-7)
        assert mine.info["REF_stress"].shape == (6,)


_MACE_SCRIPT = """
import json, sys, torch
from ase.io import read
from mace import data
from mace.calculators import MACECalculator
from mace.tools import AtomicNumberTable, torch_geometric

out = sys.argv[1]
members = [f"{out}/member00.model", f"{out}/member01.model"]
frames = read(f"{out}/train.xyz", index=":")
calc = MACECalculator(model_paths=members, device="cpu", default_dtype="float64")
energies, forces = [], []
for atoms in frames:
    atoms.calc = calc
    energies.append(atoms.get_potential_energy())
    forces.append(atoms.get_forces().tolist())

lammps = []  # (LAMMPS form, MACECalculator) energy of each member on a bulk frame
atoms = frames[1]
torch.set_default_dtype(torch.float64)  # the LAMMPS form is float64
for path in members:
    single = MACECalculator(model_paths=path, device="cpu", default_dtype="float64")
    compiled = torch.jit.load(path + "-lammps.pt")
    keys = data.KeySpecification(info_keys={}, arrays_keys={})
    config = data.config_from_atoms(atoms, key_specification=keys)
    graph = data.AtomicData.from_config(
        config, z_table=AtomicNumberTable([int(z) for z in compiled.atomic_numbers]),
        cutoff=float(compiled.r_max), heads=["Default"],
    )
    batch = torch_geometric.Batch.from_data_list([graph]).to_dict()
    result = compiled(batch, torch.ones(len(atoms), dtype=torch.float64), False)
    lammps.append((float(result["total_energy_local"][0]), single.get_potential_energy(atoms)))
print(json.dumps({"energies": energies, "forces": forces, "lammps": lammps}))
"""


def test_mace_calculator_loads_the_export_and_matches_the_committee(fitted: Fitted) -> None:
    from alflow.potential import load_exported, load_potential

    process = subprocess.run(
        [sys.executable, "-c", _MACE_SCRIPT, str(fitted.export_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    mace = json.loads(process.stdout.strip().splitlines()[-1])
    for compiled_eV, model_eV in mace["lammps"]:  # the LAMMPS form is the same potential
        assert compiled_eV == pytest.approx(model_eV, abs=1e-6)
    committee = load_potential(fitted.store, CAMPAIGN, dtype="float64")
    exported = load_exported(fitted.export_dir, dtype="float64")
    frames = read(fitted.export_dir / "train.xyz", index=":")
    for atoms, energy, forces in zip(frames, mace["energies"], mace["forces"], strict=True):
        for calc in (committee, exported):
            atoms.calc = calc
            assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-6)
            np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-6)
    assert exported.model_card["campaign"] == CAMPAIGN


def test_tampered_exported_model_is_refused(fitted: Fitted, tmp_path: Path) -> None:
    from alflow.potential import load_exported
    from alflow.potential.export import ExportError

    copy = tmp_path / "copy"
    shutil.copytree(fitted.export_dir, copy)
    model = copy / "member01.model"
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model.write_bytes(bytes(blob))
    with pytest.raises(TrainingError, match=r"member01\.model .*tampered") as info:
        load_exported(copy)
    assert "\n" not in str(info.value)
    (copy / "model_card.json").unlink()
    with pytest.raises(ExportError, match="not an exported potential"):
        load_exported(copy)


def test_tampered_model_in_gridfs_is_refused_and_nothing_is_written(
    fitted: Fitted, tmp_path: Path
) -> None:
    from bson import Binary

    from alflow.potential.export import export_potential

    record = fitted.store.models.find_one({"_id": f"{CAMPAIGN}/final/m01"})
    chunks = fitted.store.db["model_files.chunks"]
    chunk = chunks.find_one({"files_id": record["file_id"], "n": 0})
    original = bytes(chunk["data"])
    tampered = bytearray(original)
    tampered[100] ^= 0xFF
    chunks.update_one({"_id": chunk["_id"]}, {"$set": {"data": Binary(bytes(tampered))}})
    try:
        with pytest.raises(TrainingError, match="tampered or corrupt"):
            export_potential(fitted.store, CAMPAIGN, tmp_path / "out", lammps=False)
    finally:
        chunks.update_one({"_id": chunk["_id"]}, {"$set": {"data": Binary(original)}})
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_dir_needs_force(fitted: Fitted, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, stdout, stderr = cli("model", "export", "--campaign", CAMPAIGN, "--out", str(out))
    assert code == 2 and stdout == ""
    assert stderr.strip().count("\n") == 0 and "not empty" in stderr and "--force" in stderr
    assert sorted(os.listdir(tmp_path)) == ["busy"] and os.listdir(out) == ["notes.txt"]

    argv = ["model", "export", "--campaign", CAMPAIGN, "--out", str(out), "--force"]
    code, stdout, _ = cli(*argv, "--no-lammps")
    assert code == 0, stdout
    assert "member00.model" in stdout and f"model card: {out / 'model_card.md'}" in stdout
    assert not (out / "notes.txt").exists() and sorted(os.listdir(tmp_path)) == ["busy"]
    assert all(m["lammps"]["error"] for m in card(out)["members"])


def test_unknown_campaign_and_missing_final_fit_are_one_line_errors(
    fitted: Fitted, cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, _, stderr = cli("model", "export", "--campaign", "nope", "--out", str(out))
    assert code == 2 and stderr.strip().count("\n") == 0
    assert "no campaign 'nope'" in stderr and CAMPAIGN in stderr

    fitted.store.register_campaign(config("cu-unfinished"))
    code, _, stderr = cli("model", "export", "--campaign", "cu-unfinished", "--out", str(out))
    assert code == 2 and stderr.strip().count("\n") == 0
    assert "no final fit yet" in stderr and "alflow run" in stderr

    fitted.store.put_final("cu-unfinished", {"status": "failed", "reason": "1 members trained"})
    code, _, stderr = cli("model", "export", "--campaign", "cu-unfinished", "--out", str(out))
    assert code == 2 and "failed: 1 members trained" in stderr
    assert not out.exists()


def test_labels_added_after_the_final_fit_are_refused(fitted: Fitted, tmp_path: Path) -> None:
    from alflow.potential.export import ExportError, export_potential
    from alflow.structures import structure_key

    (atoms,) = copper_frames(1, seed=99)
    key = structure_key(atoms)
    fitted.store.add_structures(
        CAMPAIGN, [atoms], [key], iteration=1, status="labeled", origins=[{"kind": "test"}]
    )
    label = {
        "parameters_hash": fitted.record["parameters_hash"],
        "ok": True,
        "energy_eV": atoms.get_potential_energy(),
        "forces_eV_A": atoms.get_forces().tolist(),
    }
    fitted.store.add_label(key, label)
    try:
        with pytest.raises(ExportError, match="changed since its final fit"):
            export_potential(fitted.store, CAMPAIGN, tmp_path / "out")
    finally:
        fitted.store.structures.delete_one({"campaign": CAMPAIGN, "key": key})
        fitted.store.labels.delete_one({"structure_key": key})
    assert not (tmp_path / "out").exists()
