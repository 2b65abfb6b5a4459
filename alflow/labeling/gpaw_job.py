"""One GPAW calculation in its own process: ``python -m alflow.labeling.gpaw_job IN OUT``.

:class:`~alflow.labeling.gpaw_labeler.GPAWLabeler` writes ``input.json`` into
the calculation directory and runs this module there, serially or under MPI
(``mpiexec -n N python -m alflow.labeling.gpaw_job input.json result.json``
with ``GPAW_MPI_BACKEND=cgpaw``). The GPAW log goes to ``gpaw.txt``.

``input.json``::

    {"format": "alflow-gpaw-job/1",
     "atoms": {"numbers", "positions_A", "cell_A", "pbc"},
     "parameters": {...},        # GPAWOracle fields, after retry escalation,
                                 # optionally "mixer", "hund", "fixmagmom"
     "parameters_hash": "...",   # of the requested set (echoed back)
     "structure_key": "...",     # echoed back
     "attempt": 0, "txt": "gpaw.txt"}

``result.json`` (written by rank 0 only, atomically) always has ``status``:

- ``"ok"``: energy_eV, forces_eV_A, stress_eV_A3 (3D-periodic cells, plane
  waves), magmoms_muB (spin-polarised), scf_iterations, parameters (with the
  resolved ``kpts_mesh`` and ``kpts_gamma``), wall_s, cores, host,
  code_version; exit status 0;
- ``"scf_failed"``: the SCF did not converge or gave a non-finite energy;
  ``error`` says which; exit status 2;
- ``"error"``: any other exception: ``error`` names it, ``traceback``
  holds the tail of the traceback; exit status 1.

A process that dies without writing ``result.json`` (killed, out of memory)
is the labeler's to diagnose from the exit status and the logs.

The labeler runs the module named by ``settings.gpaw_job_module`` (this
one by default); a wrapper module may patch :func:`calculate` and call
:func:`main` (the tests inject SCF failures, kills and hangs that way:
``tests/gpaw_faults.py``).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from alflow.workcache import write_json_atomically

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_SCF_FAILED",
    "calculate",
    "gpaw_calculator_kwargs",
    "main",
    "resolve_kpts",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SCF_FAILED = 2


def resolve_kpts(parameters: dict[str, Any], atoms: Atoms) -> tuple[list[int], bool]:
    """The k-point mesh of a calculation, one point along non-periodic directions.

    Parameters
    ----------
    parameters
        ``kpts`` (explicit mesh, Monkhorst–Pack) or ``kpoint_density_per_A``
        (k-points per Å⁻¹, Γ-centred mesh).
    atoms
        The configuration (cell and pbc).

    Returns
    -------
    mesh, gamma
        Points along each reciprocal vector, and whether the mesh is Γ-centred.
    """
    pbc = [bool(p) for p in atoms.pbc]
    explicit = parameters.get("kpts")
    if explicit is not None:
        mesh = [int(k) if periodic else 1 for k, periodic in zip(explicit, pbc, strict=True)]
        return mesh, False
    from ase.calculators.calculator import kptdensity2monkhorstpack

    density = float(parameters["kpoint_density_per_A"])
    mesh = [int(k) for k in kptdensity2monkhorstpack(atoms, kptdensity=density, even=False)]
    return [k if periodic else 1 for k, periodic in zip(mesh, pbc, strict=True)], True


def gpaw_calculator_kwargs(
    parameters: dict[str, Any], atoms: Atoms, txt: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments of ``gpaw.GPAW`` for a parameter set (no GPAW import).

    Parameters
    ----------
    parameters
        GPAWOracle fields plus the optional ``mixer`` (dict), ``hund`` and
        ``fixmagmom`` (bools).
    atoms
        The configuration (k-point mesh, spin).
    txt
        GPAW's log file.

    Returns
    -------
    kwargs, resolved
        The calculator's keyword arguments, and the values resolved from the
        atoms (``kpts_mesh``, ``kpts_gamma``) to record with the result.
    """
    mesh, gamma = resolve_kpts(parameters, atoms)
    if parameters["mode"] == "pw":
        mode: Any = {"name": "pw", "ecut": float(parameters["ecut_eV"])}
    else:
        mode = "lcao"
    occupations: dict[str, Any] = {
        "name": parameters["smearing"],
        "width": float(parameters["smearing_width_eV"]),
    }
    if parameters.get("fixmagmom"):
        occupations["fixmagmom"] = True
    kwargs: dict[str, Any] = {
        "mode": mode,
        "xc": parameters["xc"],
        "kpts": {"size": mesh, "gamma": gamma},
        "occupations": occupations,
        "convergence": {
            "energy": float(parameters["convergence_energy_eV"]),
            "density": float(parameters["convergence_density"]),
        },
        "maxiter": int(parameters["maxiter"]),
        "txt": txt,
    }
    if parameters["mode"] == "lcao":
        kwargs["basis"] = parameters["basis"]
    if parameters.get("spinpol"):
        kwargs["spinpol"] = True
    if parameters.get("hund"):
        kwargs["hund"] = True
    if parameters.get("mixer"):
        kwargs["mixer"] = dict(parameters["mixer"])
    return kwargs, {"kpts_mesh": mesh, "kpts_gamma": gamma}


def _initial_magmoms(parameters: dict[str, Any], atoms: Atoms) -> list[float] | None:
    """Per-atom initial moments (μB) from the per-element map; None when not spin-polarised."""
    if not parameters.get("spinpol") or parameters.get("hund"):
        return None
    per_element = parameters.get("initial_magmoms") or {}
    return [float(per_element.get(symbol, 0.0)) for symbol in atoms.get_chemical_symbols()]


def calculate(atoms: Atoms, parameters: dict[str, Any], txt: str) -> dict[str, Any]:
    """Run GPAW; return the result fields (raises GPAW's errors unchanged)."""
    from gpaw import GPAW
    from gpaw.mpi import world

    run_parameters = dict(parameters)
    kwargs, resolved = gpaw_calculator_kwargs(run_parameters, atoms, txt)
    magmoms = _initial_magmoms(parameters, atoms)
    if magmoms is not None:
        atoms.set_initial_magnetic_moments(magmoms)
    atoms.calc = GPAW(**kwargs)
    energy_eV = float(atoms.get_potential_energy())
    if not math.isfinite(energy_eV):
        raise _NonFiniteEnergyError(f"non-finite energy {energy_eV}")
    forces = np.asarray(atoms.get_forces(), dtype=float)
    stress = None
    if atoms.pbc.all() and parameters["mode"] == "pw":
        stress = np.asarray(atoms.get_stress(voigt=True), dtype=float).tolist()
    magmoms_out = None
    if parameters.get("spinpol"):
        magmoms_out = np.asarray(atoms.calc.get_magnetic_moments(), dtype=float).tolist()
    try:
        iterations: int | None = int(atoms.calc.get_number_of_iterations())
    except (AttributeError, TypeError):
        iterations = None
    return {
        "energy_eV": energy_eV,
        "forces_eV_A": forces.tolist(),
        "stress_eV_A3": stress,
        "magmoms_muB": magmoms_out,
        "scf_iterations": iterations,
        "converged": True,
        "parameters": {**run_parameters, **resolved},
        "cores": int(world.size),
    }


class _NonFiniteEnergyError(ArithmeticError):
    """The SCF ended with a NaN or infinite energy."""


def run(input_path: Path, result_path: Path) -> int:
    """Read the input, compute, write the result on rank 0; return the exit status.

    Parameters
    ----------
    input_path
        ``input.json`` as described in the module docstring.
    result_path
        Where rank 0 writes ``result.json``.

    Returns
    -------
    int
        :data:`EXIT_OK`, :data:`EXIT_SCF_FAILED` or :data:`EXIT_ERROR`.
    """
    start = time.perf_counter()
    data = json.loads(Path(input_path).read_text())
    atoms_doc = data["atoms"]
    atoms = Atoms(
        numbers=atoms_doc["numbers"],
        positions=atoms_doc["positions_A"],
        cell=atoms_doc["cell_A"],
        pbc=atoms_doc["pbc"],
    )
    parameters = data["parameters"]
    attempt = int(data.get("attempt", 0))
    result: dict[str, Any] = {
        "format": "alflow-gpaw-result/1",
        "parameters_hash": data.get("parameters_hash"),
        "structure_key": data.get("structure_key"),
        "attempt": attempt,
        "host": socket.gethostname(),
        "error": None,
    }
    rank = 0
    status = EXIT_ERROR
    try:
        from gpaw import KohnShamConvergenceError
        from gpaw import __version__ as gpaw_version
        from gpaw.mpi import world

        rank = world.rank
        result["code_version"] = gpaw_version
        try:
            result.update(calculate(atoms, parameters, data.get("txt", "gpaw.txt")))
            result["status"] = "ok"
            status = EXIT_OK
        except (KohnShamConvergenceError, _NonFiniteEnergyError) as exc:
            maxiter = parameters["maxiter"]
            result["status"] = "scf_failed"
            message = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            if isinstance(exc, KohnShamConvergenceError):
                message += f" (SCF not converged within maxiter={maxiter})"
            result["error"] = message
            status = EXIT_SCF_FAILED
    except Exception as exc:
        result["status"] = "error"
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = "".join(traceback.format_exception(exc)[-6:])
        status = EXIT_ERROR
    result["wall_s"] = time.perf_counter() - start
    if rank == 0:
        write_json_atomically(Path(result_path), result)
    if status != EXIT_OK:
        logger.error("GPAW job %s: %s", result["status"], result["error"])
    return status


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m alflow.labeling.gpaw_job input.json result.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m alflow.labeling.gpaw_job input.json result.json\n")
        return EXIT_ERROR
    return run(Path(args[0]), Path(args[1]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
