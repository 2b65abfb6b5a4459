"""The labeler contract: every labeler (EMT, GPAW) passes the same suite.

GPAW cases are marked ``gpaw`` and skipped with the reason when GPAW is not
installed (scripts/install-gpaw.sh). They use a rattled 4-atom Al cell,
PW(200) and a 2x2x2 k mesh: about a second per calculation.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from alflow.config import EMTOracle, GPAWOracle, config_hash
from alflow.errors import LabelingError
from alflow.labeling import (
    Labeler,
    LabelResult,
    isolated_atom_energies,
    make_labeler,
)
from alflow.labeling.emt import EMTLabeler, check_supported
from alflow.settings import Settings

HAVE_GPAW = importlib.util.find_spec("gpaw") is not None

# A tighter SCF energy criterion than the default (5e-4 eV per valence
# electron) so that forces can be checked against energy differences.
GPAW_TEST_ORACLE = GPAWOracle(
    ecut_eV=200, kpts=(2, 2, 2), xc="PBE", convergence_energy_eV=1e-5, max_retries=0
)


def _emt() -> Labeler:
    return make_labeler(EMTOracle(), Settings())


def _gpaw() -> Labeler:
    if not HAVE_GPAW:
        pytest.skip("GPAW not installed (scripts/install-gpaw.sh)")
    return make_labeler(GPAW_TEST_ORACLE, Settings(mpi_ranks=1))


FACTORIES: dict[str, Callable[[], Labeler]] = {"emt": _emt, "gpaw": _gpaw}


@pytest.fixture(params=["emt", pytest.param("gpaw", marks=pytest.mark.gpaw)])
def make(request: pytest.FixtureRequest) -> Callable[[], Labeler]:
    """A factory of fresh labelers of one kind."""
    factory = FACTORIES[request.param]
    factory()  # skips early when the code is missing
    return factory


@pytest.fixture
def labeler(make: Callable[[], Labeler]) -> Labeler:
    return make()


def rattled_al() -> Atoms:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.rattle(0.05, seed=1)
    return atoms


def al_trimer() -> Atoms:
    atoms = Atoms("Al3", positions=[[0, 0, 0], [2.6, 0, 0], [1.3, 2.2, 0.1]], pbc=False)
    atoms.center(vacuum=3.0)
    return atoms


def check_result(result: LabelResult, atoms: Atoms, labeler: Labeler) -> None:
    n = len(atoms)
    assert isinstance(result, LabelResult)
    assert np.isfinite(result.energy_eV)
    assert result.forces_eV_A.shape == (n, 3)
    assert np.all(np.isfinite(result.forces_eV_A))
    assert result.converged is True
    assert result.code == labeler.code
    assert result.code_version
    assert result.parameters_hash == labeler.parameters_hash()
    assert result.cores >= 1
    assert result.host
    assert result.wall_s >= 0
    assert result.attempts and result.attempts[-1]["status"] in ("ok", "reused")
    assert result.magmoms_muB is None  # neither test labeler is spin-polarised
    doc = result.to_doc()
    text = json.dumps(doc)  # plain JSON, no numpy left
    again = LabelResult.from_doc(json.loads(text))
    assert again.energy_eV == result.energy_eV
    np.testing.assert_array_equal(again.forces_eV_A, result.forces_eV_A)


def test_is_a_labeler(labeler: Labeler) -> None:
    assert isinstance(labeler, Labeler)
    assert labeler.code in ("emt", "gpaw")


def test_parameters_and_hash(make: Callable[[], Labeler]) -> None:
    first, second = make(), make()
    parameters = first.parameters()
    json.dumps(parameters)
    assert parameters["code"] == first.code
    assert first.parameters_hash() == config_hash(parameters)
    assert first.parameters_hash() == second.parameters_hash()
    parameters["code"] = "changed"  # a copy: the labeler is unaffected
    assert first.parameters()["code"] == first.code


def test_label_periodic_cell(labeler: Labeler, tmp_path: Path) -> None:
    atoms = rattled_al()
    before = atoms.positions.copy()
    result = labeler.label(atoms, tmp_path / "new" / "dir")
    check_result(result, atoms, labeler)
    assert result.stress_eV_A3 is not None and result.stress_eV_A3.shape == (6,)
    assert abs(result.forces_eV_A.sum(axis=0)).max() < 0.05  # no net force
    np.testing.assert_array_equal(atoms.positions, before)  # input untouched
    assert atoms.calc is None


def test_label_non_periodic_cluster_has_no_stress(labeler: Labeler, tmp_path: Path) -> None:
    atoms = al_trimer()
    result = labeler.label(atoms, tmp_path)
    check_result(result, atoms, labeler)
    assert result.stress_eV_A3 is None


def test_forces_are_minus_energy_gradient(labeler: Labeler, tmp_path: Path) -> None:
    atoms = rattled_al()
    forces = labeler.label(atoms, tmp_path / "0").forces_eV_A
    step_A = 0.02
    energies = []
    for sign in (1, -1):
        displaced = atoms.copy()
        displaced.positions[1, 1] += sign * step_A
        energies.append(labeler.label(displaced, tmp_path / str(sign)).energy_eV)
    numeric = -(energies[0] - energies[1]) / (2 * step_A)
    assert numeric == pytest.approx(forces[1, 1], abs=0.01)


def test_isolated_atom_energies(labeler: Labeler, tmp_path: Path) -> None:
    energies = isolated_atom_energies(labeler, ["Al", "Al"], tmp_path, vacuum_A=3.0)
    assert list(energies) == ["Al"]
    assert np.isfinite(energies["Al"])
    again = isolated_atom_energies(labeler, ["Al"], tmp_path, vacuum_A=3.0)
    assert again == energies
    if labeler.code == "emt":
        from ase.calculators.emt import EMT

        lone = Atoms("Al", cell=[10, 10, 10])
        lone.calc = EMT()
        assert energies["Al"] == pytest.approx(lone.get_potential_energy(), abs=1e-10)
    else:
        # GPAW's zero is the spin-paired atom: Hund's-rule spin lowers it (~0.2 eV for Al)
        assert -1.0 < energies["Al"] < 0.0


# --------------------------------------------------------------------------- EMT only


def test_emt_unsupported_element_is_named(tmp_path: Path) -> None:
    labeler = EMTLabeler()
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True)
    with pytest.raises(LabelingError, match="Fe"):
        labeler.label(atoms, tmp_path)
    with pytest.raises(LabelingError, match=r"element\(s\) Fe, W"):
        check_supported(["Al", "W", "Fe", "Fe"])
    check_supported(["Al", "Cu", "Ni", "Pd", "Ag", "Pt", "Au", "H", "C", "N", "O"])
    labeler.check_supported(["Cu"])


def test_emt_matches_ase_emt(tmp_path: Path) -> None:
    from ase.calculators.emt import EMT

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=3)
    result = EMTLabeler().label(atoms, tmp_path)
    reference = atoms.copy()
    reference.calc = EMT()
    assert result.energy_eV == pytest.approx(reference.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(result.forces_eV_A, reference.get_forces(), atol=1e-12)
    np.testing.assert_allclose(result.stress_eV_A3, reference.get_stress(), atol=1e-12)


def test_make_labeler_kinds() -> None:
    assert make_labeler(EMTOracle(), Settings()).code == "emt"
    gpaw = make_labeler(GPAWOracle(), Settings(mpi_ranks=2))
    assert gpaw.code == "gpaw"  # building it imports no GPAW
