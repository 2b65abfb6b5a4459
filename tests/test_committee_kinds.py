"""Every committee kind passes the same calculator contract (tiny real MACE models).

The models are built in this process with mace-torch's constructor (8
channels, max_L 1, two interactions, ZBL pair repulsion, Cu and Au, float64)
and random weights: the contract is about how the calculator evaluates its
members, not about fit quality, so no training is needed here except for the
readout fit test (two epochs on four EMT frames).

- ``independent``: three models with different seeds;
- ``shared_body``: member 0 and two copies of it whose readouts are drawn
  anew (:func:`alflow.committee.readout_fit.reinitialise_readouts`).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from alflow.errors import TrainingError

HAS_MACE = bool(importlib.util.find_spec("mace") and importlib.util.find_spec("torch"))
pytestmark = [
    pytest.mark.mace,
    pytest.mark.skipif(not HAS_MACE, reason="mace-torch/torch not installed"),
]

KINDS = ("independent", "shared_body")
N_MEMBERS = 3


def _tiny_mace(seed: int):
    """A ScaleShiftMACE for Cu/Au with random weights (float64)."""
    import torch

    from alflow.committee.calculator import _import_mace

    mace = _import_mace()  # imports e3nn the way mace needs it
    from e3nn import o3

    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        interaction = mace.modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = mace.modules.ScaleShiftMACE(
            r_max=4.5,
            num_bessel=6,
            num_polynomial_cutoff=5,
            max_ell=2,
            interaction_cls=interaction,
            interaction_cls_first=interaction,
            num_interactions=2,
            num_elements=2,
            hidden_irreps=o3.Irreps("8x0e + 8x1o"),
            MLP_irreps=o3.Irreps("8x0e"),
            atomic_energies=np.array([-0.5, -0.3]),
            avg_num_neighbors=12.0,
            atomic_numbers=[29, 79],
            correlation=2,
            gate=torch.nn.functional.silu,
            pair_repulsion=True,
            atomic_inter_scale=0.5,
            atomic_inter_shift=-0.1,
        )
    finally:
        torch.set_default_dtype(saved)
    return model


def _save(model, path: Path) -> Path:
    import torch

    torch.save(model, path)
    return path


@pytest.fixture(scope="module")
def member_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    from alflow.committee.readout_fit import reinitialise_readouts

    root = tmp_path_factory.mktemp("kinds")
    independent = [_save(_tiny_mace(s), root / f"ind{s}.model") for s in range(N_MEMBERS)]
    base = _tiny_mace(0)
    shared = [_save(base, root / "sb0.model")]
    for m in range(1, N_MEMBERS):
        member = copy.deepcopy(base)
        reinitialise_readouts(member, seed=m)
        shared.append(_save(member, root / f"sb{m}.model"))
    equal = [_save(copy.deepcopy(base), root / f"eq{m}.model") for m in range(N_MEMBERS)]
    return {"independent": independent, "shared_body": shared, "equal": equal}


def _load(kind: str, paths: list[Path], **options):
    from alflow.committee import load_committee_of_kind

    return load_committee_of_kind(kind, paths, dtype="float64", threads=1, **options)


def _cuau(periodic: bool = True) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
    atoms.symbols[[1, 4]] = "Au"
    atoms.rattle(0.08, seed=3)
    if not periodic:
        atoms.pbc = False
        atoms.center(vacuum=3.0)
    return atoms


def _mace_results(path: Path, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray | None]:
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float64")
    probe = atoms.copy()
    probe.calc = calc
    stress = probe.get_stress() if atoms.pbc.all() else None
    return probe.get_potential_energy(), probe.get_forces(), stress


@pytest.mark.parametrize("kind", KINDS)
def test_result_keys_and_shapes(kind: str, member_files) -> None:
    atoms = _cuau()
    atoms.calc = _load(kind, member_files[kind])
    atoms.get_stress()
    results = atoms.calc.results
    n = len(atoms)
    assert np.shape(results["forces"]) == (n, 3)
    assert np.shape(results["forces_comm"]) == (N_MEMBERS, n, 3)
    assert np.shape(results["energy_comm"]) == (N_MEMBERS,)
    assert np.shape(results["forces_std"]) == (n,)
    assert np.shape(results["stress"]) == (6,)
    assert results["max_force_dev"] == pytest.approx(float(np.max(results["forces_std"])))
    assert results["max_force_dev"] > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("periodic", [True, False])
def test_members_equal_their_own_mace_calculator(kind: str, periodic: bool, member_files) -> None:
    atoms = _cuau(periodic)
    calc = _load(kind, member_files[kind])
    atoms.calc = calc
    atoms.get_forces()
    if periodic:
        atoms.get_stress()
    results = calc.results
    own = [_mace_results(p, atoms) for p in member_files[kind]]
    np.testing.assert_allclose(results["energy_comm"], [o[0] for o in own], atol=1e-5)
    np.testing.assert_allclose(results["forces_comm"], np.stack([o[1] for o in own]), atol=1e-5)
    np.testing.assert_allclose(results["forces"], np.mean([o[1] for o in own], axis=0), atol=1e-5)
    assert results["energy"] == pytest.approx(np.mean([o[0] for o in own]), abs=1e-5)
    if periodic:
        np.testing.assert_allclose(
            results["stress"], np.mean([o[2] for o in own], axis=0), atol=1e-6
        )


@pytest.mark.parametrize("kind", KINDS)
def test_propagator_forces_are_that_members_and_committee_agrees(kind: str, member_files) -> None:
    atoms = _cuau()
    full = _load(kind, member_files[kind])
    probe = atoms.copy()
    probe.calc = full
    probe.get_forces()
    propagating = _load(kind, member_files[kind], propagator=1)
    atoms.calc = propagating
    forces = atoms.get_forces()
    energy, own_forces, _ = _mace_results(member_files[kind][1], atoms)
    np.testing.assert_allclose(forces, own_forces, atol=1e-5)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-5)
    committee = propagating.evaluate_committee(atoms)
    np.testing.assert_allclose(committee["forces_comm"], full.results["forces_comm"], atol=1e-9)
    assert committee["max_force_dev"] == pytest.approx(full.results["max_force_dev"], abs=1e-9)
    np.testing.assert_allclose(atoms.calc.results["forces"], forces)  # integrator's untouched
    again = propagating.evaluate_committee(atoms)  # members already run: same answer
    np.testing.assert_allclose(again["forces_comm"], committee["forces_comm"])


@pytest.mark.parametrize("kind", KINDS)
def test_deviation_is_zero_for_equal_members(kind: str, member_files) -> None:
    atoms = _cuau()
    atoms.calc = _load(kind, member_files["equal"])
    atoms.get_forces()
    assert atoms.calc.results["max_force_dev"] < 1e-10
    assert atoms.calc.results["energy_std"] < 1e-10


@pytest.mark.parametrize("kind", KINDS)
def test_mean_forces_are_minus_the_gradient_of_the_mean_energy(kind: str, member_files) -> None:
    atoms = _cuau()
    atoms.calc = _load(kind, member_files[kind])
    forces = atoms.get_forces()
    step_A = 1e-4
    for index, axis in [(0, 0), (1, 2), (4, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[index, axis] += sign * step_A
            moved.calc = atoms.calc
            energies.append(moved.get_potential_energy())
        assert forces[index, axis] == pytest.approx(
            -(energies[0] - energies[1]) / (2 * step_A), abs=1e-5
        )


def test_shared_body_refuses_different_bodies(member_files) -> None:
    paths = [member_files["shared_body"][0], member_files["independent"][1]]
    with pytest.raises(TrainingError, match=r"member 1 does not share member 0's body") as info:
        _load("shared_body", paths)
    assert "\n" not in str(info.value)


def test_unknown_kind_is_refused(member_files) -> None:
    with pytest.raises(TrainingError, match="unknown committee kind"):
        _load("llpr", member_files["independent"])


def test_shared_body_member_trains_and_keeps_member_0s_body(member_files, tmp_path: Path) -> None:
    import torch

    from alflow.committee.readout_fit import train_readouts
    from alflow.committee.shared_body import body_mismatch
    from alflow.config import TrainingConfig

    frames = []
    for seed in range(4):
        atoms = _cuau()
        atoms.rattle(0.05, seed=10 + seed)
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    training = TrainingConfig(epochs=2, batch_size=2, valid_fraction=0.25, dtype="float64")
    base = member_files["shared_body"][0]
    trained = train_readouts(
        frames, base_model=base, training=training, seed=5, workdir=tmp_path, name="m1"
    )
    assert trained.n_train == 3 and trained.n_valid == 1
    assert np.isfinite(trained.valid_rmse_forces_meV_A)
    base_model = torch.load(base, weights_only=False)
    member = torch.load(trained.model_path, weights_only=False)
    assert body_mismatch(base_model, member) is None
    readouts = zip(base_model.readouts.parameters(), member.readouts.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in readouts)
    again = train_readouts(
        frames,
        base_model=base,
        training=training.model_copy(update={"epochs": 1}),
        seed=5,
        workdir=tmp_path / "again",
        name="m1",
        start_readouts=trained.model_path,
    )
    assert again.hyperparameters["readouts_from"] == str(trained.model_path)
    assert again.valid_rmse_forces_meV_A <= trained.valid_rmse_forces_meV_A * 1.5
    calc = _load("shared_body", [base, trained.model_path])  # loads as a shared-body pair
    probe = frames[0].copy()
    probe.calc = calc
    assert np.isfinite(probe.get_potential_energy())


def test_builder_chains_shared_body_members_after_member_0() -> None:
    pytest.importorskip("fireworks")
    from alflow.config import CampaignConfig
    from alflow.workflow.builder import final_workflow, iteration_workflow

    raw = {"name": "kinds", "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}}
    for kind in KINDS:
        config = CampaignConfig.model_validate({**raw, "committee": {"kind": kind, "members": 3}})
        for workflow in (iteration_workflow(config, 1), final_workflow(config)):
            trains = [fw for fw in workflow.fws if fw.spec["step"] == "train"]
            member0 = next(fw for fw in trains if fw.spec["member"] == 0)
            children = set(workflow.links[member0.fw_id])
            others = {fw.fw_id for fw in trains if fw.spec["member"] > 0}
            assert (others <= children) == (kind == "shared_body")


@pytest.mark.slow  # one real MACE training of member 0 (~20-60 s on 2 busy cores)
def test_train_step_fits_shared_body_members_on_member_0(store, server_settings, tmp_path) -> None:
    from alflow.committee import SharedBodyCalculator
    from alflow.config import CampaignConfig
    from alflow.steps.context import StepContext
    from alflow.steps.label import label_structure, reference_energies
    from alflow.steps.train import train_committee_member
    from alflow.structures import structure_key
    from alflow.testing import copper_frames

    config = CampaignConfig.model_validate(
        {
            "name": "cu-shared",
            "initial": {"structures": [{"kind": "bulk", "symbol": "Cu", "cubic": True}]},
            "committee": {
                "members": 2,
                "kind": "shared_body",
                "model": {"channels": 8, "max_L": 0, "r_max_A": 4.0},
                "training": {"epochs": 2, "batch_size": 4, "valid_fraction": 0.2},
            },
        }
    )
    store.register_campaign(config)
    ctx = StepContext(store, config, server_settings, tmp_path / "labels")
    frames = copper_frames(6, seed=1)
    for atoms in frames:
        atoms.calc = None
    keys = [structure_key(a) for a in frames]
    origins = [{"kind": "seed", "iteration": 0, "index": i} for i in range(len(frames))]
    store.add_structures(ctx.campaign, frames, keys, iteration=0, status="seed", origins=origins)
    for key in keys:
        label_structure(ctx, 0, key)
    reference_energies(ctx, ["Cu"])

    early = StepContext(store, config, server_settings, tmp_path / "early")
    with pytest.raises(TrainingError, match="member 0 of this iteration has not trained"):
        train_committee_member(early, 0, 1)
    train_committee_member(StepContext(store, config, server_settings, tmp_path / "m0"), 0, 0)
    ctx1 = StepContext(store, config, server_settings, tmp_path / "m1")
    out = train_committee_member(ctx1, 0, 1)
    records = store.trained_models(ctx.campaign, 0)
    assert [r["member"] for r in records] == [0, 1]
    assert (
        records[1]["shared_body_of"] == records[0]["_id"] == out["model_id"].replace("m01", "m00")
    )
    calc = StepContext(store, config, server_settings, tmp_path / "load").load_committee(records)
    assert isinstance(calc, SharedBodyCalculator)
    probe = frames[0].copy()
    probe.calc = calc
    assert calc.n_members == 2 and probe.get_forces().shape == (len(probe), 3)


@pytest.mark.parametrize("kind", KINDS)
def test_selection_descriptors_work_with_every_kind(kind: str, member_files) -> None:
    from alflow.selection import mace_structure_descriptors

    calc = _load(kind, member_files[kind])
    frames = [_cuau(), _cuau(periodic=False)]
    descriptors = mace_structure_descriptors(calc, frames)
    assert descriptors is not None and descriptors.shape[0] == 2
    assert np.all(np.isfinite(descriptors)) and not np.allclose(descriptors[0], descriptors[1])
