"""GPAW DFT labels, each calculation in its own (MPI) process.

:class:`GPAWLabeler` writes ``input.json`` into the calculation directory,
runs :mod:`alflow.labeling.gpaw_job` there (``mpiexec -n N python -m
alflow.labeling.gpaw_job input.json result.json`` for N > 1 ranks, plain
``python -m ...`` for one) and reads ``result.json``.

- SCF failures are retried up to ``oracle.max_retries`` times
  (:mod:`alflow.labeling.gpaw_retry`), each with a fresh calculator and
  gentler *numerics* first (maxiter ×2 per retry, Pulay
  mixer beta 0.05, nmaxold 5, weight 50). Only the last retry, and only when
  at least one numerics-only retry came before it, also doubles the smearing
  width: that changes the physics (≈40 meV/atom for rattled Al4 at 0.1 →
  0.2 eV), so such a result carries ``parameters_effective_hash`` (the hash
  of the physics actually used) and training can leave it out.
- A process that crashes or is killed (no ``result.json``) or a job that
  raised another error is not retried: the attempt is recorded with the exit
  status or signal and the tail of the logs, and :class:`LabelingFailedError`
  is raised.
- Every attempt is recorded in ``attempts.json``; the files of a failed
  attempt are kept as ``<name>-attempt<i>.<ext>``. The directory is never
  removed.
- A rerun in the same directory reuses a successful ``result.json`` of the
  same structure and requested parameters instead of recomputing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from alflow.config import GPAWOracle, config_hash
from alflow.labeling.base import LabelingFailedError, LabelResult, isolated_atom_box
from alflow.labeling.gpaw_job import EXIT_ERROR, EXIT_OK, EXIT_SCF_FAILED
from alflow.labeling.gpaw_retry import (
    NUMERICS_KEYS,
    effective_parameters_hash,
    escalated_parameters,
    physics_changed,
)
from alflow.procutil import die_with_parent
from alflow.settings import Settings
from alflow.structures import atoms_to_doc, structure_key

__all__ = ["GPAWLabeler"]

logger = logging.getLogger(__name__)

INPUT_NAME = "input.json"
RESULT_NAME = "result.json"
ATTEMPTS_NAME = "attempts.json"
TXT_NAME = "gpaw.txt"
STDOUT_NAME = "job.out"
STDERR_NAME = "job.err"
_LOG_TAIL_LINES = 25


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _describe_exit(returncode: int) -> tuple[str, str | None]:
    """A readable exit status and the signal's name if a signal ended the job."""
    if returncode < 0:
        name = _signal_name(-returncode)
        return f"killed by {name}", name
    if returncode > 128 and returncode - 128 < 65:
        name = _signal_name(returncode - 128)
        return f"exit status {returncode} (a process was probably killed by {name})", name
    return f"exit status {returncode}", None


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class GPAWLabeler:
    """Label configurations with GPAW, one process (MPI job) per calculation.

    Parameters
    ----------
    oracle
        What to compute (mode, cutoff, xc, k-points, smearing, SCF, retries).
    settings
        Where it runs: ``mpi_command``, ``mpi_ranks``, ``mpi_extra_args``.
    timeout_s
        Kill a calculation after this wall time (s); None: no limit (the
        queue's walltime applies). A timed-out attempt is not retried.
    python
        Interpreter of the job (default: this one).
    """

    code = "gpaw"

    def __init__(
        self,
        oracle: GPAWOracle,
        settings: Settings,
        *,
        timeout_s: float | None = None,
        python: str | None = None,
    ) -> None:
        self.oracle = oracle
        self.settings = settings
        self.timeout_s = timeout_s
        self.python = python or sys.executable
        requested = oracle.model_dump(mode="json")
        requested.pop("max_retries")  # how hard to try, not what to compute
        self._parameters: dict[str, Any] = requested

    # ------------------------------------------------------------------ protocol

    def parameters(self) -> dict[str, Any]:
        """Requested parameters: the GPAWOracle fields except ``max_retries``."""
        return json.loads(json.dumps(self._parameters))

    def parameters_hash(self) -> str:
        """:func:`alflow.config.config_hash` of :meth:`parameters`."""
        return config_hash(self._parameters)

    def label(self, atoms: Atoms, workdir: Path) -> LabelResult:
        """GPAW energy, forces, stress (3D-periodic, plane waves), magnetic moments.

        Parameters
        ----------
        atoms
            The configuration (not modified).
        workdir
            The calculation directory (created; kept afterwards).

        Returns
        -------
        LabelResult

        Raises
        ------
        LabelingFailedError
            Every attempt failed, the job crashed or was killed; ``.attempts``
            lists them.
        """
        return self._label(atoms, Path(workdir), self._parameters, self.parameters_hash())

    # ------------------------------------------------------------------ isolated atoms

    def isolated_atom_parameters(self) -> dict[str, Any]:
        """Parameters of an isolated-atom calculation.

        The labeler's mode, cutoff/basis, xc and SCF criteria; spin-polarised
        with Hund's-rule moment kept fixed, Γ point, Fermi–Dirac 0.01 eV.
        """
        return {
            **self.parameters(),
            "kpts": [1, 1, 1],
            "spinpol": True,
            "hund": True,
            "fixmagmom": True,
            "initial_magmoms": {},
            "smearing": "fermi-dirac",
            "smearing_width_eV": 0.01,
        }

    def isolated_atom_energy(self, symbol: str, workdir: Path, *, vacuum_A: float = 6.0) -> float:
        """Energy (eV) of one spin-polarised ``symbol`` atom in a non-periodic box.

        Parameters
        ----------
        symbol
            Chemical symbol.
        workdir
            Calculation directory.
        vacuum_A
            Vacuum on each side of the atom (Å).

        Returns
        -------
        float
        """
        parameters = self.isolated_atom_parameters()
        atoms = isolated_atom_box(symbol, vacuum_A)
        return self._label(atoms, Path(workdir), parameters, config_hash(parameters)).energy_eV

    # ------------------------------------------------------------------ running

    def command(self) -> list[str]:
        """The command line of one job (run inside the calculation directory)."""
        job = [self.python, "-m", self.settings.gpaw_job_module, INPUT_NAME, RESULT_NAME]
        if self.settings.mpi_ranks <= 1:
            return job
        return [
            self.settings.mpi_command,
            "-n",
            str(self.settings.mpi_ranks),
            *shlex.split(self.settings.mpi_extra_args),
            *job,
        ]

    def environment(self) -> dict[str, str]:
        """Environment of the job: this one plus what GPAW under MPI needs.

        One BLAS/OpenMP thread per process (``OMP_NUM_THREADS=1``,
        ``OPENBLAS_NUM_THREADS=1``): GPAW parallelises with MPI ranks, and
        threaded OpenBLAS on small matrices oversubscribes the cores (the
        4-atom test cell took 11.7 s instead of 1.4 s on a busy 2-core
        machine). For more than one rank, ``GPAW_MPI_BACKEND=cgpaw`` (GPAW's
        own MPI from a plain python under a launcher) and, as root, Open
        MPI's ``OMPI_ALLOW_RUN_AS_ROOT`` pair unless already set. The job's
        python imports the installed :mod:`alflow` (wheel or editable).
        """
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        if self.settings.mpi_ranks > 1:
            env["GPAW_MPI_BACKEND"] = "cgpaw"
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
                env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        return env

    def _reusable(self, workdir: Path, parameters_hash: str, key: str) -> dict | None:
        """A successful result.json of this structure and parameter set, if any."""
        path = workdir / RESULT_NAME
        if not path.is_file():
            return None
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            logger.warning("%s: unreadable, recomputing", path)
            return None
        if (
            result.get("status") == "ok"
            and result.get("parameters_hash") == parameters_hash
            and result.get("structure_key") == key
        ):
            return result
        logger.info("%s belongs to another structure or parameter set: recomputing", path)
        return None

    def _label(
        self, atoms: Atoms, workdir: Path, requested: dict[str, Any], parameters_hash: str
    ) -> LabelResult:
        if not (np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.cell[:]))):
            raise LabelingFailedError("GPAW: non-finite positions or cell; not started")
        workdir.mkdir(parents=True, exist_ok=True)
        key = structure_key(atoms)
        previous = self._reusable(workdir, parameters_hash, key)
        if previous is not None:
            attempts = self._read_attempts(workdir)
            attempts.append({"attempt": len(attempts), "status": "reused", "wall_s": 0.0})
            logger.info("%s: reusing result.json (%s)", workdir, key)
            return self._result(previous, requested, parameters_hash, attempts)
        stale = workdir / RESULT_NAME
        if stale.exists():
            stale.replace(workdir / "result-previous.json")
        atoms_doc = atoms_to_doc(atoms)
        attempts: list[dict[str, Any]] = []
        for attempt in range(self.oracle.max_retries + 1):
            parameters, changed = escalated_parameters(requested, attempt, self.oracle.max_retries)
            record, result = self._attempt(
                workdir, atoms_doc, parameters, changed, attempt, parameters_hash, key
            )
            attempts.append(record)
            self._write_attempts(workdir, attempts)
            if result is not None:
                return self._result(result, requested, parameters_hash, attempts)
            self._archive(workdir, attempt)
            if record["status"] != "scf_failed":
                break
            if attempt < self.oracle.max_retries:
                logger.warning("%s: attempt %d: %s; retrying", workdir, attempt, record["error"])
        last = attempts[-1]
        message = (
            f"GPAW failed for {atoms.get_chemical_formula()} in {workdir} after "
            f"{len(attempts)} attempt(s): {last['status']}: {last['error']}"
        )
        logger.error(message)
        raise LabelingFailedError(message, attempts=attempts)

    def _attempt(
        self,
        workdir: Path,
        atoms_doc: dict[str, Any],
        parameters: dict[str, Any],
        changed: dict[str, Any],
        attempt: int,
        parameters_hash: str,
        key: str,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Run one job; return its record and, when it succeeded, its result."""
        job_input = {
            "format": "alflow-gpaw-job/1",
            "atoms": atoms_doc,
            "parameters": parameters,
            "parameters_hash": parameters_hash,
            "structure_key": key,
            "attempt": attempt,
            "txt": TXT_NAME,
        }
        (workdir / INPUT_NAME).write_text(json.dumps(job_input, indent=1))
        command = self.command()
        record: dict[str, Any] = {
            "attempt": attempt,
            "settings": changed,
            "command": shlex.join(command),
            "status": "error",
            "error": None,
            "returncode": None,
            "signal": None,
        }
        logger.info("%s: attempt %d: %s", workdir, attempt, record["command"])
        start = time.perf_counter()
        returncode, timed_out, launch_error = self._run(command, workdir)
        record["wall_s"] = time.perf_counter() - start
        record["returncode"] = returncode
        result = self._read_result(workdir, parameters_hash, key)
        if launch_error is not None:
            record["error"] = launch_error
            return record, None
        if result is not None and not timed_out:
            record["status"] = result["status"]
            record["error"] = result.get("error")
            if result.get("traceback"):
                record["traceback"] = result["traceback"]
            if result["status"] == "ok" and returncode == EXIT_OK:
                return record, result
            if result["status"] == "ok":
                record["status"] = "error"
                record["error"] = f"result.json is ok but the job ended with exit {returncode}"
            elif returncode not in (EXIT_SCF_FAILED, EXIT_ERROR):
                record["error"] = f"{record['error']} (job {_describe_exit(returncode)[0]})"
            return record, None
        # no result: the process died (signal, out of memory, timeout, MPI abort)
        description, signal_name = _describe_exit(returncode)
        record["status"] = "crashed"
        record["signal"] = signal_name
        record["error"] = (
            f"timed out after {self.timeout_s} s and killed"
            if timed_out
            else f"GPAW job ended without result.json: {description}"
        )
        tails = []
        for name in (STDERR_NAME, STDOUT_NAME, TXT_NAME):
            tail = _tail(workdir / name)
            if tail:
                tails.append(f"--- {name} (tail) ---\n{tail}")
        record["log_tail"] = "\n".join(tails)
        return record, None

    def _run(self, command: list[str], workdir: Path) -> tuple[int, bool, str | None]:
        """Run the job; return (exit status, timed out, launch error)."""
        with (
            open(workdir / STDOUT_NAME, "w") as stdout,
            open(workdir / STDERR_NAME, "w") as stderr,
        ):
            try:
                process = subprocess.Popen(
                    command,
                    cwd=workdir,
                    stdout=stdout,
                    stderr=stderr,
                    env=self.environment(),
                    start_new_session=True,  # one process group: mpiexec and its ranks
                    preexec_fn=die_with_parent(),  # no orphan job if the worker is killed
                )
            except OSError as exc:
                return EXIT_ERROR, False, f"cannot start {command[0]!r}: {exc.strerror or exc}"
            try:
                return process.wait(timeout=self.timeout_s), False, None
            except subprocess.TimeoutExpired:
                self._kill(process)
                return process.wait(), True, None
            except BaseException:  # KeyboardInterrupt, SystemExit: do not orphan the job
                self._kill(process)
                process.wait()
                raise

    @staticmethod
    def _kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    @staticmethod
    def _read_result(workdir: Path, parameters_hash: str, key: str) -> dict[str, Any] | None:
        path = workdir / RESULT_NAME
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if result.get("parameters_hash") != parameters_hash or result.get("structure_key") != key:
            return None
        return result

    @staticmethod
    def _archive(workdir: Path, attempt: int) -> None:
        """Keep the files of a failed attempt as ``<stem>-attempt<i><suffix>``."""
        for name in (INPUT_NAME, RESULT_NAME, TXT_NAME, STDOUT_NAME, STDERR_NAME):
            path = workdir / name
            if path.exists():
                path.replace(workdir / f"{path.stem}-attempt{attempt}{path.suffix}")

    @staticmethod
    def _write_attempts(workdir: Path, attempts: list[dict[str, Any]]) -> None:
        tmp = workdir / (ATTEMPTS_NAME + ".tmp")
        tmp.write_text(json.dumps(attempts, indent=1))
        tmp.replace(workdir / ATTEMPTS_NAME)

    @staticmethod
    def _read_attempts(workdir: Path) -> list[dict[str, Any]]:
        try:
            attempts = json.loads((workdir / ATTEMPTS_NAME).read_text())
        except (OSError, ValueError):
            return []
        return attempts if isinstance(attempts, list) else []

    def _result(
        self,
        result: dict[str, Any],
        requested: dict[str, Any],
        parameters_hash: str,
        attempts: list[dict[str, Any]],
    ) -> LabelResult:
        used = {k: result["parameters"].get(k) for k in requested}
        changed = {k: v for k, v in used.items() if v != requested[k]}
        effective_hash = effective_parameters_hash(used) if physics_changed(changed) else None
        if effective_hash is not None:
            logger.warning(
                "%s: converged only with changed physics %s: recorded with "
                "parameters_effective_hash %s",
                result.get("structure_key"),
                {k: v for k, v in changed.items() if k not in NUMERICS_KEYS},
                effective_hash,
            )
        defaults = {
            "converged": True,
            "cores": self.settings.mpi_ranks,
            "host": "",
            "code_version": "",
        }
        return LabelResult.from_doc(
            {
                **defaults,
                **result,
                "code": self.code,
                "parameters_hash": parameters_hash,
                "attempts": attempts,
                "parameters_effective_hash": effective_hash,
            }
        )
