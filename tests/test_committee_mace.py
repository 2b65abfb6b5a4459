"""Real tiny MACE committee: ZBL prior, out-of-distribution flagging, cheap MD, tampered files.

One module-scoped committee (3 members, 16 channels, max_L 0, 10 epochs on 16
EMT-labeled 32-atom Cu frames whose closest pairs are >= ~2.28 Å, ZBL pair
repulsion on: the default) is trained in subprocesses, two side by side with
one thread each, and shared by every test here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from alflow.config import MaceModelConfig, TrainingConfig
from alflow.errors import TrainingError
from alflow.testing import A_CU_A, copper_frames, train_side_by_side

HAS_MACE = bool(importlib.util.find_spec("mace") and importlib.util.find_spec("torch"))
pytestmark = [
    pytest.mark.mace,
    pytest.mark.slow,  # the shared committee takes ~25-55 s to train on 2 cores
    pytest.mark.skipif(not HAS_MACE, reason="mace-torch/torch not installed"),
]

MODEL = MaceModelConfig(channels=16, max_L=0, r_max_A=4.5, num_interactions=2, correlation=2)
TRAINING = TrainingConfig(epochs=10, batch_size=4, valid_fraction=0.2)  # pair_repulsion default


def supercell() -> Atoms:
    return bulk("Cu", "fcc", a=A_CU_A, cubic=True).repeat((2, 2, 2))


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    return copper_frames(16)


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory: pytest.TempPathFactory, frames: list[Atoms]) -> list[Path]:
    root = tmp_path_factory.mktemp("mace_committee")
    jobs = [(frames, seed) for seed in range(3)]
    members = train_side_by_side(jobs, model=MODEL, training=TRAINING, root=root)
    return [m.model_path for m in members]


def committee(paths: list[Path], **kwargs):
    from alflow.committee import load_committee

    return load_committee(paths, threads=1, **kwargs)


def test_training_data_has_no_close_pairs(frames: list[Atoms]) -> None:
    closest = min(float(neighbor_list("d", a, 3.0).min()) for a in frames)
    assert closest > 2.2


def test_zbl_prior_repels_squeezed_pair(model_paths: list[Path]) -> None:
    """Energy rises monotonically and steeply as an atom approaches a neighbour (2.0 → 0.5 Å)."""
    calc = committee(model_paths)
    base = supercell()
    i, j, d, vectors = neighbor_list("ijdD", base, 2.6)
    first = np.flatnonzero(i == 0)[0]
    neighbour, direction = int(j[first]), vectors[first] / d[first]
    distances_A = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    energies_eV = []
    for r in distances_A:
        atoms = base.copy()
        atoms.positions[neighbour] = atoms.positions[0] + r * direction
        atoms.calc = calc
        energies_eV.append(atoms.get_potential_energy())
    rises = np.diff(energies_eV)
    assert np.all(rises > 0), dict(zip(distances_A, energies_eV, strict=True))
    assert energies_eV[distances_A.index(0.6)] - energies_eV[0] > 10.0
    assert energies_eV[-1] - energies_eV[0] > 30.0


def test_prior_is_zero_on_the_training_data(model_paths: list[Path], frames: list[Atoms]) -> None:
    """The repulsive prior switches off at the data's shortest pair: the fit is unchanged."""
    from alflow.committee import load_committee

    for path in model_paths:
        assert path.name.endswith(".repulsive.model")
        bare = path.with_name(path.name.replace(".repulsive.model", ".model"))
        with_prior, without = load_committee([path, path]), load_committee([bare, bare])
        for atoms in frames[:4]:
            a, b = atoms.copy(), atoms.copy()
            a.calc, b.calc = with_prior, without
            assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
            np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-6)


def test_dimer_energy_rises_below_the_data(model_paths: list[Path], frames: list[Atoms]) -> None:
    """Isolated Cu2: the energy rises monotonically from the data's shortest pair to 0.5 Å."""
    from alflow.contacts import dimer
    from alflow.structures import shortest_pair_distances_A

    shortest_A = shortest_pair_distances_A(frames)[("Cu", "Cu")]
    calc = committee(model_paths)
    distances_A = np.arange(0.5, shortest_A, 0.01)
    energies_eV = []
    for r in distances_A:
        atoms = dimer("Cu", "Cu", float(r), 6.0)
        atoms.calc = calc
        energies_eV.append(atoms.get_potential_energy())
    assert np.all(np.diff(energies_eV) < 0), "pair energy falls somewhere below the data"


def test_far_off_configurations_are_flagged(model_paths: list[Path]) -> None:
    calc = committee(model_paths)
    rng = np.random.default_rng(11)

    def uncertainty(atoms: Atoms) -> float:
        atoms.calc = calc
        atoms.get_forces()
        return float(calc.results["max_force_dev"])

    inside = []
    for _ in range(4):  # like the training frames
        atoms = supercell()
        atoms.positions += rng.normal(0.0, 0.06, atoms.positions.shape)
        inside.append(uncertainty(atoms))
    compressed = supercell()
    compressed.set_cell(compressed.cell * 0.85, scale_atoms=True)  # 15 % linear compression
    compressed.positions += rng.normal(0.0, 0.06, compressed.positions.shape)
    hot = supercell()  # displacements of a ~3000 K crystal (0.25 Å rms per component)
    hot.positions += rng.normal(0.0, 0.25, hot.positions.shape)
    assert uncertainty(compressed) > 2.0 * max(inside)
    assert uncertainty(hot) > 2.0 * max(inside)


def test_propagating_member_shares_the_graph_with_the_committee(
    model_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    atoms = supercell()
    atoms.rattle(0.05, seed=2)
    full = committee(model_paths)
    atoms.calc = full
    atoms.get_forces()
    reference = dict(full.results)

    cheap = committee(model_paths, propagator=1)
    graphs = []
    build = cheap._graph
    monkeypatch.setattr(cheap, "_graph", lambda a: graphs.append(1) or build(a))
    probe = atoms.copy()
    probe.calc = cheap
    forces = probe.get_forces()
    scale = float(np.abs(reference["forces_comm"]).max())
    np.testing.assert_allclose(forces, reference["forces_comm"][1], atol=1e-5 * scale)
    assert cheap.model_evaluations == 1 and "max_force_dev" not in cheap.results
    result = cheap.evaluate_committee(probe)
    assert len(graphs) == 1  # one neighbour list for the step and the committee
    assert cheap.model_evaluations == 3
    np.testing.assert_allclose(result["forces_comm"], reference["forces_comm"], atol=1e-5 * scale)
    np.testing.assert_allclose(result["energy_comm"], reference["energy_comm"], rtol=1e-6)
    assert result["max_force_dev"] == pytest.approx(reference["max_force_dev"], rel=1e-4)
    np.testing.assert_allclose(probe.get_forces(), forces)  # the integrator's forces stay


def test_walker_with_real_committee_costs_one_model_per_step(model_paths: list[Path]) -> None:
    from alflow.exploration import run_walker

    calc = committee(model_paths, propagator=0)
    result = run_walker(
        supercell(),
        calc,
        temperature_K=300.0,
        steps=30,
        timestep_fs=2.0,
        sample_interval_steps=10,
        seed=0,
        trust_hi_eV_A=5.0,
        min_distance_A=1.5,
        max_temperature_factor=3.0,
    )
    assert result.stop_reason is None
    assert [f.step for f in result.frames] == [0, 10, 20, 30]
    assert result.committee_evaluations == 4
    assert calc.model_evaluations == 31 + 4 * 2  # one member per step, two more per sample
    assert all(0 < f.max_force_dev_eV_A < 5.0 for f in result.frames)


def test_tampered_model_file_is_refused(model_paths: list[Path], tmp_path: Path) -> None:
    import torch

    data = bytearray(model_paths[0].read_bytes())
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    flipped = tmp_path / "flipped.model"
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    flipped.write_bytes(bytes(data))
    not_a_model = tmp_path / "weights.model"
    torch.save({"weights": torch.zeros(3)}, not_a_model)
    for bad in (truncated, flipped, not_a_model):
        with pytest.raises(TrainingError, match="cannot load MACE model") as info:
            committee([model_paths[1], bad])
        assert str(bad) in str(info.value)
