"""committee.foundation_model: members fine-tuned from a foundation file, and its checks.

A tiny Cu "donor" (16 channels, max_L 0, r_max 4.5 Å, ZBL prior on) is
trained on EMT frames of 32-atom Cu (rattle 0.06 Å, ±2 % strain) and laid
out as ``alflow model export`` writes it (``member00.model``, ``train.xyz``,
``model_card.json``). Members of a "hot" task (rattle 0.1 Å, +3 % strain)
start from it: two with multihead replay (seeds 1 and 2), one from a copy of
the file without its export beside it (plain fine-tuning, as a MACE-MP file),
and one from scratch, all with 3 epochs on 6 frames.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from alflow.config import MaceModelConfig, TrainingConfig, validate_campaign
from alflow.errors import ConfigError, TrainingError
from alflow.testing import A_CU_A, copper_frames

HAS_MACE = bool(importlib.util.find_spec("mace") and importlib.util.find_spec("torch"))
pytestmark = [
    pytest.mark.mace,
    pytest.mark.skipif(not HAS_MACE, reason="mace-torch/torch not installed"),
]

MODEL = MaceModelConfig(channels=16, max_L=0, r_max_A=4.5, num_interactions=2, correlation=2)
DONOR_TRAINING = TrainingConfig(epochs=30, batch_size=4, valid_fraction=0.2)
TRAINING = TrainingConfig(epochs=3, batch_size=4, valid_fraction=0.2)


def hot_frames(n: int, seed: int) -> list[Atoms]:
    """32-atom Cu at other conditions than the donor's: rattle 0.1 Å, +3 % strain, EMT labels."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=A_CU_A * 1.03, cubic=True).repeat((2, 2, 2))
        atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


def write_export(model_path: Path, frames: list[Atoms], out: Path) -> Path:
    """``member00.model``, ``train.xyz`` and ``model_card.json`` as an export lays them out."""
    from alflow.potential.export import CARD_JSON, TRAIN_XYZ, write_training_set
    from alflow.workcache import sha256_file

    out.mkdir(parents=True)
    model = out / "member00.model"
    shutil.copyfile(model_path, model)
    for i, atoms in enumerate(frames):
        atoms.info.update(key=f"donor-{i}", iteration=0)
    data = write_training_set(out / TRAIN_XYZ, frames, {"Cu": 0.0}, True)
    files = {p.name: {"sha256": sha256_file(p)} for p in (model, out / TRAIN_XYZ)}
    (out / CARD_JSON).write_text(
        json.dumps({"campaign": "cu-donor", "training_data": data, "files": files})
    )
    return model


def force_rmse(model_path: Path, frames: list[Atoms]) -> float:
    from alflow.committee import load_committee

    calc = load_committee([model_path, model_path], threads=1)
    errors = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calc
        errors.append(atoms.get_forces() - frame.calc.results["forces"])
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def first_validation(member, name: str) -> dict:
    """MACE's evaluation of the ``Default`` head before the first optimisation step."""
    from alflow.committee.mace_run import read_results as _read_results

    workdir = Path(member.hyperparameters["log_path"]).parent
    records = _read_results(workdir, name, member.seed)
    return next(r for r in records if r.get("epoch") is None and r.get("head") == "Default")


@pytest.fixture(scope="module")
def donor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from alflow.committee.train import train_member

    root = tmp_path_factory.mktemp("donor")
    frames = copper_frames(10, seed=0)
    member = train_member(
        frames, model=MODEL, training=DONOR_TRAINING, seed=0, workdir=root / "train", name="donor"
    )
    return write_export(member.model_path, frames, root / "export")


@pytest.fixture(scope="module")
def trained(donor: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from alflow.committee.train import train_member

    root = tmp_path_factory.mktemp("members")
    bare = root / "mace-mp-like" / "cu.model"  # no model card, no train.xyz beside it
    bare.parent.mkdir()
    shutil.copyfile(donor, bare)
    frames = hot_frames(6, seed=1)
    jobs = {"m1": (1, donor), "m2": (2, donor), "plain": (1, bare), "scratch": (1, None)}

    def train(name: str):
        seed, foundation = jobs[name]
        return train_member(
            frames, model=MODEL, training=TRAINING, seed=seed, workdir=root / name,
            foundation=foundation, name=name, threads=1,
        )  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        members = dict(zip(jobs, pool.map(train, jobs), strict=True))
    return {"members": members, "test": hot_frames(4, seed=2)}


@pytest.mark.slow  # five tiny trainings, two side by side: ~2-4 min on 2 busy cores
def test_foundation_start_trains_and_evaluates(trained: dict, donor: Path) -> None:
    from alflow.workcache import sha256_file

    members, test = trained["members"], trained["test"]
    start = {name: first_validation(m, name) for name, m in members.items()}
    rmse = {name: force_rmse(m.model_path, test) for name, m in members.items()}
    for name in ("m1", "m2", "plain"):
        # before the first step: the donor's weights, far better than a fresh model
        assert start[name]["rmse_f"] < 0.5 * start["scratch"]["rmse_f"], start
        assert start[name]["rmse_e_per_atom"] < 0.2 * start["scratch"]["rmse_e_per_atom"], start
        # after 3 epochs on 6 frames, still better on held-out frames of the new task
        assert rmse[name] < 0.8 * rmse["scratch"], rmse
    record = members["m1"].hyperparameters["foundation"]
    assert record["sha256"] == sha256_file(donor)
    assert record["card_name"] == "cu-donor"
    assert record["multihead_replay"] and record["n_replay"] == 8
    assert record["repulsion_stripped"] == "alflow"
    assert "--pt_train_file" in members["m1"].hyperparameters["argv"]
    plain = members["plain"].hyperparameters["foundation"]
    assert not plain["multihead_replay"] and "plain fine-tuning" in plain["note"]
    assert members["scratch"].hyperparameters["foundation"] is None


@pytest.mark.slow
def test_foundation_members_differ_and_keep_one_head(trained: dict) -> None:
    from alflow.committee import load_committee
    from alflow.committee.foundation import inspect_foundation

    m1, m2 = trained["members"]["m1"], trained["members"]["m2"]
    atoms = trained["test"][0].copy()
    forces = []
    for member in (m1, m2):
        atoms.calc = load_committee([member.model_path, member.model_path], threads=1)
        forces.append(atoms.get_forces().copy())
    assert np.abs(forces[0] - forces[1]).max() > 1e-4
    info = inspect_foundation(m1.model_path)
    assert info.heads == ["Default"]  # the replay head is dropped after training
    assert info.repulsion == "alflow"  # alflow's prior is back on, for this data


# --------------------------------------------------------------------------- errors


def campaign(tmp_path: Path, foundation: str, symbols=("Cu",), r_max_A: float = 4.5):
    data = {
        "name": "t",
        "initial": {"structures": [{"kind": "bulk", "symbol": s} for s in symbols]},
        "committee": {
            "foundation_model": foundation,
            "model": {**MODEL.model_dump(), "r_max_A": r_max_A},
        },
        "base_dir": str(tmp_path),
    }
    return validate_campaign(data)


def one_line_error(config, error=ConfigError) -> str:
    from alflow.workflow.submit import prepare_campaign

    with pytest.raises(error) as info:
        prepare_campaign(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file_is_one_line_naming_the_resolved_path(tmp_path: Path) -> None:
    message = one_line_error(campaign(tmp_path, "models/cu.model"))
    assert (
        message == f"committee.foundation_model: {tmp_path / 'models' / 'cu.model'}: file not found"
    )


def test_not_a_model_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "cu.model").write_text("not a model\n")
    message = one_line_error(campaign(tmp_path, "cu.model"))
    assert message.startswith(
        f"committee.foundation_model: {tmp_path / 'cu.model'}: not a loadable MACE model ("
    )


def test_wrong_elements_names_the_missing_ones(donor: Path, tmp_path: Path) -> None:
    message = one_line_error(campaign(tmp_path, str(donor), symbols=("Cu", "Au")))
    assert message == (
        f"committee.foundation_model: {donor}: has no Au "
        "(its elements: Cu; the campaign needs Au Cu)"
    )


def test_wrong_r_max_names_both_values_and_the_key(donor: Path, tmp_path: Path) -> None:
    message = one_line_error(campaign(tmp_path, str(donor), r_max_A=5.0))
    assert message == (
        f"committee.foundation_model: {donor}: r_max 4.5 Å differs from "
        "committee.model.r_max_A 5 Å: set committee.model.r_max_A: 4.5 "
        "(a fine-tuned model keeps its foundation's cutoff)"
    )


def test_train_step_checks_again(donor: Path, tmp_path: Path) -> None:
    """The same check in the train step: a TrainingError before mace runs."""
    from alflow.committee.train import train_member

    frames = hot_frames(3, seed=3)
    for atoms in frames:
        atoms.symbols[0] = "Au"
        atoms.calc = SinglePointCalculator(atoms, **atoms.calc.results)
    with pytest.raises(
        TrainingError, match=r"has no Au \(its elements: Cu; the campaign needs Au Cu\)"
    ):
        train_member(
            frames, model=MODEL, training=TRAINING, seed=0, workdir=tmp_path, foundation=donor
        )
    assert not (tmp_path / "member.train.log").exists()
