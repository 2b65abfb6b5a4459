"""Training committee members: the argv builder, the split, failure handling, and real MACE runs.

Tests marked ``mace`` train tiny models (16 channels, max_L 0, a few epochs on
12 EMT-labeled Cu frames of 4 atoms) in subprocesses; they share one trained
committee through a module-scoped fixture.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from alflow.committee import train as train_module
from alflow.committee.mace_job import MaceJob
from alflow.committee.train import (
    TrainedMember,
    build_train_argv,
    parse_error_table,
    split_frames,
    train_member,
)
from alflow.config import MaceModelConfig, TrainingConfig
from alflow.errors import ConfigError, TrainingError
from alflow.workcache import save_cached

HAS_MACE = importlib.util.find_spec("mace") is not None and importlib.util.find_spec("torch")
needs_mace = pytest.mark.skipif(not HAS_MACE, reason="mace-torch/torch not installed")

TINY_MODEL = MaceModelConfig(channels=16, max_L=0, r_max_A=4.5, num_interactions=2, correlation=2)
# the repulsive prior is tested in test_committee_mace.py; here: the training mechanics
TINY_TRAINING = TrainingConfig(
    epochs=3, batch_size=4, valid_fraction=0.25, dtype="float32", pair_repulsion=False
)


def emt_frames(n: int = 12, seed: int = 0, symbol: str = "Cu") -> list[Atoms]:
    """Rattled, strained 4-atom fcc cells labeled with EMT (energy, forces, stress)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk(symbol, "fcc", a=3.6 if symbol == "Cu" else 4.05, cubic=True)
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.03, 0.03)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
        atoms.calc = EMT()
        labels = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


# --------------------------------------------------------------------------- pure logic


def _option(argv: list[str], key: str) -> str:
    return argv[argv.index(key) + 1]


def test_split_is_seeded_disjoint_and_complete() -> None:
    train_a, valid_a = split_frames(20, 0.2, seed=3)
    train_b, valid_b = split_frames(20, 0.2, seed=3)
    np.testing.assert_array_equal(valid_a, valid_b)
    np.testing.assert_array_equal(train_a, train_b)
    assert len(valid_a) == 4 and len(train_a) == 16
    assert sorted([*train_a, *valid_a]) == list(range(20))
    _, valid_c = split_frames(20, 0.2, seed=4)
    assert not np.array_equal(valid_a, valid_c)


def test_split_keeps_one_frame_on_each_side() -> None:
    train, valid = split_frames(2, 0.1, seed=0)
    assert len(train) == 1 and len(valid) == 1
    train, valid = split_frames(3, 0.49, seed=0)
    assert len(train) >= 1 and len(valid) >= 1


def test_bootstrap_resamples_training_indices() -> None:
    train, valid = split_frames(40, 0.1, seed=1, bootstrap=True)
    assert len(train) == 36
    assert len(set(train.tolist())) < 36  # some frames drawn twice
    assert not set(train.tolist()) & set(valid.tolist())


def test_argv_clamps_batch_size_and_maps_settings() -> None:
    training = TrainingConfig(
        batch_size=16, dtype="float64", ema=True, pair_repulsion=True, stress_weight=0.0
    )
    argv = build_train_argv(
        model=TINY_MODEL, training=training, seed=5, name="m0", n_train=7, n_valid=2, e0s="average"
    )
    assert _option(argv, "--batch_size") == "7"
    assert _option(argv, "--valid_batch_size") == "2"
    assert _option(argv, "--default_dtype") == "float64"
    assert _option(argv, "--seed") == "5"
    assert _option(argv, "--num_channels") == "16"
    assert _option(argv, "--max_L") == "0"
    assert _option(argv, "--r_max") == "4.5"
    assert _option(argv, "--E0s") == "average"
    assert _option(argv, "--loss") == "weighted"
    assert _option(argv, "--energy_key") == "REF_energy"
    assert _option(argv, "--forces_key") == "REF_forces"
    assert "--ema" in argv
    # MACE's own ZBL overlaps the data: alflow's data-following prior is attached after training
    assert "--pair_repulsion" not in argv
    assert "--foundation_model" not in argv


def test_argv_stress_loss_and_switches() -> None:
    training = TrainingConfig(stress_weight=10.0, ema=False, pair_repulsion=False)
    argv = build_train_argv(
        model=TINY_MODEL,
        training=training,
        seed=0,
        name="m",
        n_train=10,
        n_valid=2,
        e0s="{29: -3.5}",
        previous_model=Path("prev.model"),
    )
    assert _option(argv, "--loss") == "stress"
    assert float(_option(argv, "--stress_weight")) == 10.0
    assert "--ema" not in argv and "--pair_repulsion" not in argv
    assert _option(argv, "--E0s") == "{29: -3.5}"
    assert Path(_option(argv, "--foundation_model")).is_absolute()


def test_e0s_argument_from_symbols() -> None:
    assert train_module._e0s_argument({"Cu": -3.5, "Al": -1.25}) == "{13: -1.25, 29: -3.5}"


LOG_TABLE = """\
2026-01-01 00:00:00.000 INFO: Error-table on TRAIN and VALID:
+---------------+---------------------+------------------+-------------------+
|  config_type  | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
+---------------+---------------------+------------------+-------------------+
| train_Default |         1277.5      |        176.1     |         22.24     |
| valid_Default |           12.8      |        163.9     |         19.90     |
+---------------+---------------------+------------------+-------------------+
2026-01-01 00:00:00.000 INFO: Done
"""


def test_parse_error_table() -> None:
    errors = parse_error_table(LOG_TABLE)
    assert errors["RMSE E / meV / atom"] == 12.8
    assert errors["RMSE F / meV / A"] == 163.9
    assert parse_error_table(LOG_TABLE, row="train_Default")["RMSE F / meV / A"] == 176.1
    assert parse_error_table("no table here") == {}
    nan_table = LOG_TABLE.replace("12.8", "nan")
    assert math.isnan(parse_error_table(nan_table)["RMSE E / meV / atom"])


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "at least 2"),
        ([bulk("Cu")] * 3, "no reference labels"),
    ],
)
def test_unusable_frames_raise_training_error(
    tmp_path: Path, frames: list[Atoms], message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        train_member(frames, model=TINY_MODEL, training=TINY_TRAINING, seed=0, workdir=tmp_path)


def test_nan_labels_raise_training_error(tmp_path: Path) -> None:
    frames = emt_frames(4)
    bad = frames[2]
    bad.calc = SinglePointCalculator(bad, energy=float("nan"), forces=np.zeros((len(bad), 3)))
    with pytest.raises(TrainingError, match="frame 2: non-finite"):
        train_member(frames, model=TINY_MODEL, training=TINY_TRAINING, seed=0, workdir=tmp_path)


def _fake_run(outcomes: list[str], calls: list[list[str]]):
    """A stand-in for the MACE subprocess: 'ok', 'nan' or 'fail' per call."""

    def run(job: MaceJob, log_path: Path, threads: int) -> int:
        argv, workdir = job.argv, Path(job.workdir)
        calls.append(argv)
        outcome = outcomes[len(calls) - 1]
        name, seed = _option(argv, "--name"), _option(argv, "--seed")
        (workdir / "results").mkdir(exist_ok=True)
        loss = float("nan") if outcome == "nan" else 0.5
        record = {"loss": loss, "mode": "eval", "epoch": 0}
        (workdir / "results" / f"{name}_run-{seed}_train.txt").write_text(json.dumps(record))
        if outcome == "fail":
            log_path.write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
            return 1
        table = LOG_TABLE if outcome == "ok" else LOG_TABLE.replace("12.8", "nan")
        log_path.write_text(table)
        (workdir / f"{name}.model").write_bytes(b"model")
        return 0

    return run


def test_nan_divergence_is_retried_once_with_seed_plus_1000(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(train_module, "_run_mace", _fake_run(["nan", "ok"], calls))
    member = train_member(
        emt_frames(8), model=TINY_MODEL, training=TINY_TRAINING, seed=7, workdir=tmp_path
    )
    assert [_option(argv, "--seed") for argv in calls] == ["7", "1007"]
    assert member.seed == 1007
    assert member.hyperparameters["retried_seed"] == 1007
    assert member.valid_rmse_energy_meV_atom == 12.8
    assert member.valid_rmse_forces_meV_A == 163.9
    assert (tmp_path / "member.train.seed7.log").exists()


def test_two_divergences_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(train_module, "_run_mace", _fake_run(["nan", "nan"], calls))
    with pytest.raises(TrainingError, match="diverged twice"):
        train_member(
            emt_frames(8), model=TINY_MODEL, training=TINY_TRAINING, seed=1, workdir=tmp_path
        )
    assert len(calls) == 2
    assert not (tmp_path / "member.model").exists()


def test_failed_run_raises_with_log_tail_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(train_module, "_run_mace", _fake_run(["fail"], calls))
    with pytest.raises(TrainingError) as info:
        train_member(
            emt_frames(8), model=TINY_MODEL, training=TINY_TRAINING, seed=1, workdir=tmp_path
        )
    message = str(info.value)
    assert "exit code 1" in message
    assert "RuntimeError: boom" in message
    assert str(tmp_path / "member.train.log") in message
    assert len(calls) == 1  # a plain failure is not retried


def test_cached_member_without_its_model_file_is_trained_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(train_module, "_run_mace", _fake_run(["ok", "ok", "ok"], calls))
    frames = emt_frames(8)

    def train() -> TrainedMember:
        return train_member(
            frames, model=TINY_MODEL, training=TINY_TRAINING, seed=3, workdir=tmp_path
        )

    member = train()
    assert train() == member and len(calls) == 1  # cached
    member.model_path.unlink()
    train()
    assert len(calls) == 2  # the cache names a file that is gone
    cache = tmp_path / "member.result.pkl"
    key = pickle.loads(cache.read_bytes())["fingerprint"]
    save_cached(cache, key, (member, None))  # saved with no model file behind it
    member.model_path.unlink()
    train()
    assert len(calls) == 3


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this node has a CUDA device")
def test_cuda_device_without_one_is_a_clear_error(tmp_path: Path) -> None:
    from alflow.committee import load_committee

    with pytest.raises(ConfigError, match=r"settings.device is 'cuda' \(ALFLOW_DEVICE\)"):
        load_committee([tmp_path / "member.model"], device="cuda")
    with pytest.raises(TrainingError, match="sees 0 CUDA device"):
        train_member(
            emt_frames(4), model=TINY_MODEL, training=TINY_TRAINING, seed=0, workdir=tmp_path,
            device="cuda",
        )  # fmt: skip


def test_training_files_carry_ref_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ase.io import read

    monkeypatch.setattr(train_module, "_run_mace", _fake_run(["ok"], []))
    frames = emt_frames(8)
    member = train_member(
        frames, model=TINY_MODEL, training=TINY_TRAINING, seed=2, workdir=tmp_path
    )
    train = read(tmp_path / "train.xyz", ":")
    valid = read(tmp_path / "valid.xyz", ":")
    assert (len(train), len(valid)) == (member.n_train, member.n_valid) == (6, 2)
    first = frames[int(np.setdiff1d(np.arange(8), member.hyperparameters["valid_indices"])[0])]
    assert train[0].info["REF_energy"] == pytest.approx(first.calc.results["energy"])
    # extxyz writes per-atom arrays with 8 decimals
    np.testing.assert_allclose(
        train[0].arrays["REF_forces"], first.calc.results["forces"], rtol=0, atol=1e-7
    )
    assert train[0].info["REF_stress"].shape == (6,)
    assert member.hyperparameters["e0s"] == "average"
    json.dumps(member.hyperparameters)  # storable as is


def test_copper_frames_are_seeded_and_labeled() -> None:
    from alflow.testing import copper_frames

    first, again = copper_frames(2, seed=3), copper_frames(2, seed=3)
    assert [len(a) for a in first] == [32, 32]
    np.testing.assert_array_equal(first[1].positions, again[1].positions)
    assert first[0].get_forces().shape == (32, 3)
    assert not np.allclose(first[0].positions, copper_frames(1, seed=4)[0].positions)


def test_train_side_by_side_refuses_shared_seeds(tmp_path: Path) -> None:
    from alflow.testing import train_side_by_side

    frames = emt_frames(4)
    with pytest.raises(ValueError, match="different seeds"):
        train_side_by_side(
            [(frames, 1), (frames, 1)], model=TINY_MODEL, training=TINY_TRAINING, root=tmp_path
        )


# --------------------------------------------------------------------------- real MACE


@pytest.fixture(scope="module")
def tiny_committee(tmp_path_factory: pytest.TempPathFactory) -> list[TrainedMember]:
    """Two tiny members trained side by side (one thread each)."""
    if not HAS_MACE:
        pytest.skip("mace-torch/torch not installed")
    from alflow.testing import train_side_by_side

    frames = emt_frames(12)
    root = tmp_path_factory.mktemp("committee")
    jobs = [(frames, seed) for seed in (0, 1)]
    return train_side_by_side(jobs, model=TINY_MODEL, training=TINY_TRAINING, root=root)


@pytest.mark.mace
@pytest.mark.slow
def test_tiny_members_train_and_report_metrics(tiny_committee: list[TrainedMember]) -> None:
    for seed, member in enumerate(tiny_committee):
        assert member.model_path.name == f"m{seed}.model"
        assert member.model_path.is_file()
        assert member.seed == seed
        assert (member.n_train, member.n_valid) == (9, 3)
        assert member.valid_rmse_forces_meV_A is not None and member.valid_rmse_forces_meV_A > 0
        assert member.valid_rmse_energy_meV_atom is not None
        assert member.wall_s > 0
        assert member.hyperparameters["retried_seed"] is None
        assert member.hyperparameters["mace_version"]
        json.dumps(member.hyperparameters)


@pytest.mark.mace
@pytest.mark.slow
def test_committee_matches_mace_calculator(tiny_committee: list[TrainedMember]) -> None:
    """load_committee agrees with mace-torch's own MACECalculator (run in a clean process)."""
    from alflow.committee.calculator import load_committee

    paths = [m.model_path for m in tiny_committee]
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=4)
    calc = load_committee(paths, dtype="float32")
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    results = calc.results
    assert results["energy_comm"].shape == (2,)
    assert results["forces_comm"].shape == (2, 32, 3)
    assert results["forces_std"].shape == (32,)
    assert stress.shape == (6,)
    assert results["stress_comm"].shape == (2, 6)
    assert results["max_force_dev"] > 0
    assert results["energy_std"] > 0

    script = (
        "import json, sys, numpy as np\n"
        "from ase.io import read\n"
        "from mace.calculators import MACECalculator\n"
        "atoms = read(sys.argv[1])\n"
        "atoms.calc = MACECalculator(model_paths=sys.argv[2:], device='cpu', "
        "default_dtype='float32')\n"
        "out = {'energy': atoms.get_potential_energy(), 'forces': atoms.get_forces().tolist(),"
        " 'stress': atoms.get_stress().tolist(),"
        " 'energy_comm': atoms.calc.results['energy_comm'].tolist(),"
        " 'forces_comm': atoms.calc.results['forces_comm'].tolist()}\n"
        "print(json.dumps(out))\n"
    )
    structure = tiny_committee[0].model_path.parent.parent / "probe.xyz"
    plain = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    plain.write(structure)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(structure), *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    ref = json.loads(done.stdout.strip().splitlines()[-1])
    assert energy == pytest.approx(ref["energy"], rel=1e-5)
    scale = np.abs(ref["forces"]).max()
    np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(results["energy_comm"], ref["energy_comm"], rtol=1e-5)
    np.testing.assert_allclose(
        results["forces_comm"], ref["forces_comm"], rtol=0, atol=1e-5 * scale
    )
    np.testing.assert_allclose(
        stress, ref["stress"], rtol=0, atol=1e-5 * np.abs(ref["stress"]).max()
    )


@pytest.mark.mace
@pytest.mark.slow
def test_committee_calculator_contains_side_effects(tiny_committee: list[TrainedMember]) -> None:
    import torch

    from alflow.committee.calculator import load_committee

    before_dtype = torch.get_default_dtype()
    before_env = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    calc = load_committee([m.model_path for m in tiny_committee], dtype="float64")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.pbc = (True, True, False)
    atoms.calc = calc
    assert atoms.get_forces().dtype == np.float64
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    assert torch.get_default_dtype() == before_dtype
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == before_env


@pytest.mark.mace
def test_load_committee_rejects_missing_or_corrupt_files(tmp_path: Path) -> None:
    if not HAS_MACE:
        pytest.skip("mace-torch/torch not installed")
    from alflow.committee.calculator import load_committee

    with pytest.raises(TrainingError, match="not found"):
        load_committee([tmp_path / "missing.model"])
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_text("not a model")
    with pytest.raises(TrainingError, match="cannot load"):
        load_committee([corrupt])


@pytest.mark.mace
@pytest.mark.slow
def test_continue_from_previous_model(tiny_committee: list[TrainedMember], tmp_path: Path) -> None:
    """A continued run starts where the previous model ended and keeps its E0s."""
    previous = tiny_committee[0]
    training = TINY_TRAINING.model_copy(update={"epochs": 1})
    member = train_member(
        emt_frames(12),
        model=TINY_MODEL,
        training=training,
        seed=0,
        workdir=tmp_path,
        previous_model=previous.model_path,
        name="m0",
        threads=2,
    )
    assert member.model_path.is_file()
    assert member.hyperparameters["e0s"] == "previous_model"
    assert set(member.hyperparameters["e0s_eV"]) == {"Cu"}
    log = Path(member.hyperparameters["log_path"]).read_text()
    assert "--foundation_model" in " ".join(member.hyperparameters["argv"])
    initial = re.search(r"Initial: head: Default, loss=\s*([\d.]+)", log)
    previous_log = Path(previous.hyperparameters["log_path"]).read_text()
    previous_losses = [
        float(x) for x in re.findall(r"Epoch \d+: head: Default, loss=\s*([\d.]+)", previous_log)
    ]
    # same data and split as the previous member: its first validation loss is the previous best
    assert initial is not None
    assert float(initial.group(1)) == pytest.approx(min(previous_losses), rel=1e-3)


@pytest.mark.mace
def test_real_mace_failure_raises_training_error(tmp_path: Path) -> None:
    """A previous model that is not a model makes the MACE process fail."""
    if not HAS_MACE:
        pytest.skip("mace-torch/torch not installed")
    bogus = tmp_path / "bogus.model"
    bogus.write_text("garbage")
    with pytest.raises(TrainingError) as info:
        train_member(
            emt_frames(6),
            model=TINY_MODEL,
            training=TINY_TRAINING,
            seed=0,
            workdir=tmp_path / "run",
            previous_model=bogus,
            e0s_eV={"Cu": -3.5},
        )
    message = str(info.value)
    assert "failed (exit code" in message
    assert "member.train.log" in message
    assert "--- last lines ---" in message
