"""GPAWLabeler: MPI jobs, SCF retries, crashes, idempotent reruns.

The unmarked tests check the pure parts (command line, environment, k-point
mesh, retry escalation) without GPAW. The ``gpaw`` tests run real, tiny
calculations (rattled 4-atom Al cell, PW(200), k 2x2x2) and use the job's
fault injection (``tests/gpaw_faults.py``, run as the job module).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from gpaw_faults import fault_settings, set_fault

from alflow.config import GPAWOracle, config_hash
from alflow.errors import LabelingError
from alflow.labeling.gpaw_job import gpaw_calculator_kwargs, resolve_kpts
from alflow.labeling.gpaw_labeler import GPAWLabeler
from alflow.labeling.gpaw_retry import (
    GENTLE_MIXER,
    effective_parameters_hash,
    escalated_parameters,
    physics_changed,
)
from alflow.settings import Settings

HAVE_GPAW = importlib.util.find_spec("gpaw") is not None
HAVE_MPIEXEC = shutil.which("mpiexec") is not None

needs_gpaw = pytest.mark.skipif(
    not HAVE_GPAW, reason="GPAW not installed (scripts/install-gpaw.sh)"
)
needs_mpiexec = pytest.mark.skipif(not HAVE_MPIEXEC, reason="mpiexec not found")

ORACLE = GPAWOracle(ecut_eV=200, kpts=(2, 2, 2), xc="PBE", smearing_width_eV=0.1)


def rattled_al() -> Atoms:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.rattle(0.05, seed=1)
    return atoms


# --------------------------------------------------------------------------- no GPAW needed


def test_command_serial_and_mpi() -> None:
    serial = GPAWLabeler(ORACLE, Settings(mpi_ranks=1), python="py")
    assert serial.command() == ["py", "-m", "alflow.labeling.gpaw_job", "input.json", "result.json"]
    settings = Settings(mpi_command="srun", mpi_ranks=4, mpi_extra_args="--cpu-bind=cores -K")
    mpi = GPAWLabeler(ORACLE, settings, python="py")
    assert mpi.command()[:6] == ["srun", "-n", "4", "--cpu-bind=cores", "-K", "py"]
    env = mpi.environment()
    assert env["GPAW_MPI_BACKEND"] == "cgpaw"
    assert env["OMP_NUM_THREADS"] == "1"
    assert serial.environment().get("GPAW_MPI_BACKEND") == os.environ.get("GPAW_MPI_BACKEND")
    assert serial.environment()["OPENBLAS_NUM_THREADS"] == "1"


def test_parameters_exclude_retry_budget() -> None:
    one = GPAWLabeler(ORACLE.model_copy(update={"max_retries": 0}), Settings())
    two = GPAWLabeler(ORACLE.model_copy(update={"max_retries": 5}), Settings(mpi_ranks=2))
    assert "max_retries" not in one.parameters()
    assert one.parameters_hash() == two.parameters_hash() == config_hash(one.parameters())
    other = GPAWLabeler(ORACLE.model_copy(update={"ecut_eV": 250}), Settings())
    assert other.parameters_hash() != one.parameters_hash()


def test_escalation_schedule() -> None:
    """Numerics (maxiter, mixer) first; smearing only on the last of >= 2 retries."""
    requested = GPAWLabeler(ORACLE, Settings()).parameters()
    same, changed = escalated_parameters(requested, 0, 2)
    assert same == requested and changed == {}
    first, changed = escalated_parameters(requested, 1, 2)
    assert changed == {"maxiter": 666, "mixer": GENTLE_MIXER}
    assert first["xc"] == "PBE" and first["smearing_width_eV"] == 0.1
    second, changed = escalated_parameters(requested, 2, 2)
    assert second["maxiter"] == 1332 and second["smearing_width_eV"] == pytest.approx(0.2)
    assert not physics_changed({"maxiter": 666, "mixer": GENTLE_MIXER})
    assert physics_changed(changed)
    only_retry = escalated_parameters(requested, 1, 1)[1]  # a single retry never smears more
    assert "smearing_width_eV" not in only_retry
    cold = {**requested, "smearing_width_eV": 0.0}
    assert escalated_parameters(cold, 2, 2)[1]["smearing_width_eV"] == pytest.approx(0.05)


def test_changed_physics_is_flagged_with_effective_hash() -> None:
    labeler = GPAWLabeler(ORACLE, Settings())
    requested = labeler.parameters()
    job = {"energy_eV": -1.0, "forces_eV_A": [[0, 0, 0]], "wall_s": 1.0, "host": "h"}
    numerics, _ = escalated_parameters(requested, 1, 2)
    kept = labeler._result(
        {**job, "parameters": {**numerics, "kpts_mesh": [2, 2, 2]}},
        requested,
        labeler.parameters_hash(),
        [],
    )
    assert kept.parameters_effective_hash is None
    smeared, _ = escalated_parameters(requested, 2, 2)
    flagged = labeler._result(
        {**job, "parameters": smeared}, requested, labeler.parameters_hash(), []
    )
    assert flagged.parameters_effective_hash == effective_parameters_hash(smeared)
    assert flagged.parameters_effective_hash != effective_parameters_hash(requested)
    assert flagged.parameters_hash == labeler.parameters_hash()  # still the requested identity
    assert flagged.to_doc()["parameters_effective_hash"] == flagged.parameters_effective_hash


def test_kpoint_mesh_respects_pbc() -> None:
    requested = GPAWLabeler(ORACLE, Settings()).parameters()
    atoms = rattled_al()
    assert resolve_kpts(requested, atoms) == ([2, 2, 2], False)
    slab = atoms.copy()
    slab.pbc = [True, True, False]
    assert resolve_kpts(requested, slab) == ([2, 2, 1], False)
    by_density = {**requested, "kpts": None, "kpoint_density_per_A": 3.0}
    mesh, gamma = resolve_kpts(by_density, atoms)  # 2π·3/4.05 Å = 4.65 → 5
    assert mesh == [5, 5, 5] and gamma is True
    molecule = Atoms("Al2", positions=[[0, 0, 0], [2.6, 0, 0]], cell=[8, 8, 8], pbc=False)
    assert resolve_kpts(by_density, molecule) == ([1, 1, 1], True)


def test_calculator_kwargs() -> None:
    requested = GPAWLabeler(ORACLE.model_copy(update={"spinpol": True}), Settings()).parameters()
    kwargs, resolved = gpaw_calculator_kwargs(
        escalated_parameters(requested, 2, 2)[0], rattled_al(), "gpaw.txt"
    )
    assert kwargs["mode"] == {"name": "pw", "ecut": 200.0}
    assert kwargs["kpts"] == {"size": [2, 2, 2], "gamma": False}
    assert kwargs["occupations"] == {"name": "fermi-dirac", "width": 0.2}
    assert kwargs["mixer"] == GENTLE_MIXER and kwargs["maxiter"] == 1332
    assert kwargs["spinpol"] is True and kwargs["xc"] == "PBE"
    assert resolved == {"kpts_mesh": [2, 2, 2], "kpts_gamma": False}
    lcao = {**requested, "mode": "lcao"}
    kwargs, _ = gpaw_calculator_kwargs(lcao, rattled_al(), None)
    assert kwargs["mode"] == "lcao" and kwargs["basis"] == "dzp"


def test_non_finite_input_is_refused_before_starting(tmp_path: Path) -> None:
    atoms = rattled_al()
    atoms.positions[0, 0] = np.nan
    with pytest.raises(LabelingError, match="non-finite"):
        GPAWLabeler(ORACLE, Settings()).label(atoms, tmp_path)
    assert not (tmp_path / "input.json").exists()


def test_missing_launcher_is_a_recorded_failure(tmp_path: Path) -> None:
    settings = Settings(mpi_command="no-such-mpiexec", mpi_ranks=2)
    with pytest.raises(LabelingError, match="no-such-mpiexec") as info:
        GPAWLabeler(ORACLE, settings).label(rattled_al(), tmp_path)
    (attempt,) = info.value.attempts
    assert attempt["status"] == "error"


# --------------------------------------------------------------------------- real GPAW


@pytest.mark.gpaw
@needs_gpaw
@needs_mpiexec
def test_two_ranks_match_gpaw_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    atoms = rattled_al()
    labeler = GPAWLabeler(ORACLE, Settings(mpi_ranks=2))
    result = labeler.label(atoms, tmp_path / "mpi")
    assert result.cores == 2
    assert result.attempts[0]["command"].startswith("mpiexec -n 2 ")
    assert result.parameters["kpts_mesh"] == [2, 2, 2]
    assert result.scf_iterations is not None and result.scf_iterations > 0
    assert (tmp_path / "mpi" / "gpaw.txt").is_file()

    # the same calculation, GPAW called directly in this process
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # effective if GPAW's BLAS is not loaded yet
    from gpaw import GPAW, PW, FermiDirac

    direct = atoms.copy()
    direct.calc = GPAW(
        mode=PW(200),
        xc="PBE",
        kpts=(2, 2, 2),
        occupations=FermiDirac(0.1),
        convergence={"energy": 5e-4, "density": 1e-4},
        maxiter=333,
        txt=str(tmp_path / "direct.txt"),
    )
    assert result.energy_eV == pytest.approx(direct.get_potential_energy(), abs=1e-4)
    np.testing.assert_allclose(result.forces_eV_A, direct.get_forces(), atol=1e-3)
    np.testing.assert_allclose(result.stress_eV_A3, direct.get_stress(), atol=1e-4)


@pytest.mark.gpaw
@needs_gpaw
def test_scf_failure_is_retried_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fault_settings(monkeypatch, "scf_fail_first")
    labeler = GPAWLabeler(ORACLE.model_copy(update={"max_retries": 2}), settings)
    result = labeler.label(rattled_al(), tmp_path)
    assert [a["status"] for a in result.attempts] == ["scf_failed", "ok"]
    failed, ok = result.attempts
    assert "KohnShamConvergenceError" in failed["error"] and failed["settings"] == {}
    assert ok["settings"] == {"maxiter": 666, "mixer": GENTLE_MIXER}  # numerics only
    assert result.parameters["smearing_width_eV"] == 0.1  # the physics asked for
    assert result.parameters["maxiter"] == 666  # what was actually used
    assert result.parameters_effective_hash is None
    assert result.parameters_hash == labeler.parameters_hash()  # what was asked for
    assert (tmp_path / "gpaw-attempt0.txt").is_file() and (tmp_path / "gpaw.txt").is_file()
    assert json.loads((tmp_path / "attempts.json").read_text())[0]["status"] == "scf_failed"


@pytest.mark.gpaw
@needs_gpaw
def test_scf_failure_without_retries_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fault_settings(monkeypatch, "scf_fail_first")
    labeler = GPAWLabeler(ORACLE.model_copy(update={"max_retries": 0}), settings)
    with pytest.raises(LabelingError, match="scf_failed") as info:
        labeler.label(rattled_al(), tmp_path / "none")
    assert [a["status"] for a in info.value.attempts] == ["scf_failed"]

    set_fault(monkeypatch, "scf_fail_always")
    labeler = GPAWLabeler(ORACLE.model_copy(update={"max_retries": 1}), settings)
    with pytest.raises(LabelingError, match="2 attempt") as info:
        labeler.label(rattled_al(), tmp_path / "always")
    assert [a["status"] for a in info.value.attempts] == ["scf_failed", "scf_failed"]
    assert info.value.attempts[1]["settings"]["maxiter"] == 666


@pytest.mark.gpaw
@needs_gpaw
@needs_mpiexec
def test_killed_job_is_a_recorded_failure_and_a_rerun_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    atoms = rattled_al()
    labeler = GPAWLabeler(ORACLE, fault_settings(monkeypatch, "kill", mpi_ranks=2))
    with pytest.raises(LabelingError, match=r"without result\.json") as info:
        labeler.label(atoms, tmp_path)
    (attempt,) = info.value.attempts  # a crash is not retried with SCF settings
    assert attempt["status"] == "crashed"
    assert attempt["signal"] == "SIGKILL" and attempt["returncode"] != 0
    assert "gpaw.txt" in attempt["log_tail"]
    kept = {p.name for p in tmp_path.iterdir()}
    assert {"attempts.json", "input-attempt0.json", "job-attempt0.err", "gpaw-attempt0.txt"} <= kept
    assert "result.json" not in kept

    set_fault(monkeypatch, None)
    result = labeler.label(atoms, tmp_path)  # the rerun after the kill
    assert [a["status"] for a in result.attempts] == ["ok"]


@pytest.mark.gpaw
@needs_gpaw
def test_timeout_kills_the_job(tmp_path: Path) -> None:
    labeler = GPAWLabeler(ORACLE, Settings(), timeout_s=0.2)
    with pytest.raises(LabelingError, match="timed out") as info:
        labeler.label(rattled_al(), tmp_path)
    assert info.value.attempts[0]["status"] == "crashed"


@pytest.mark.gpaw
@needs_gpaw
def test_rerun_reuses_result_json(tmp_path: Path) -> None:
    atoms = rattled_al()
    labeler = GPAWLabeler(ORACLE, Settings())
    first = labeler.label(atoms, tmp_path)
    stamp = (tmp_path / "result.json").stat().st_mtime_ns

    again = GPAWLabeler(ORACLE.model_copy(update={"max_retries": 0}), Settings()).label(
        atoms.copy(), tmp_path
    )
    assert (tmp_path / "result.json").stat().st_mtime_ns == stamp  # not recomputed
    assert [a["status"] for a in again.attempts] == ["ok", "reused"]
    assert again.energy_eV == first.energy_eV
    np.testing.assert_array_equal(again.forces_eV_A, first.forces_eV_A)

    moved = atoms.copy()
    moved.positions[0, 0] += 0.05  # another structure in the same directory: recomputed
    other = labeler.label(moved, tmp_path)
    assert [a["status"] for a in other.attempts] == ["ok"]
    assert other.energy_eV != first.energy_eV
    assert (tmp_path / "result-previous.json").is_file()
