"""The GPAW job with faults injected, for the tests (``python -m gpaw_faults input result``).

Run as ``settings.gpaw_job_module`` with ``tests/`` on ``PYTHONPATH`` (see
:func:`fault_settings`); the fault comes from ``ALFLOW_TEST_GPAW_FAULT``:

- ``scf_fail_first``: attempt 0 runs with ``maxiter=3`` (the SCF fails);
- ``scf_fail_always``: every attempt runs with ``maxiter=3``;
- ``kill``: rank 0 sends itself SIGKILL after GPAW computed the energy and
  forces, before ``result.json`` is written;
- ``hang``: every rank sleeps (up to an hour) before GPAW starts, as a
  calculation cut short by a walltime or a node failure would look.

Without the variable it is the production job unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

FAULT_ENV = "ALFLOW_TEST_GPAW_FAULT"
FAULTS = ("scf_fail_first", "scf_fail_always", "kill", "hang")
MODULE = "gpaw_faults"
_HANG_S = 3600.0
_FAULT_MAXITER = 3


def fault_settings(monkeypatch: Any, fault: str | None, **settings: Any) -> Any:
    """Settings whose GPAW jobs run this module, with ``fault`` set in the environment."""
    from alflow.settings import Settings

    tests_dir = str(Path(__file__).resolve().parent)
    path = os.environ.get("PYTHONPATH", "")
    if tests_dir not in path.split(os.pathsep):
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests_dir, path) if p))
    set_fault(monkeypatch, fault)
    return Settings(gpaw_job_module=MODULE, **settings)


def set_fault(monkeypatch: Any, fault: str | None) -> None:
    """Set (or clear, with None) the fault the next jobs inject."""
    if fault is None:
        monkeypatch.delenv(FAULT_ENV, raising=False)
        return
    assert fault in FAULTS, fault
    monkeypatch.setenv(FAULT_ENV, fault)


def _faulty(calculate: Any, fault: str, attempt: int) -> Any:
    def wrapped(atoms: Any, parameters: dict[str, Any], txt: str) -> dict[str, Any]:
        from gpaw.mpi import world

        if fault == "hang":
            time.sleep(_HANG_S)
        if fault == "scf_fail_always" or (fault == "scf_fail_first" and attempt == 0):
            parameters["maxiter"] = _FAULT_MAXITER  # in place: the job reports it
        result = calculate(atoms, parameters, txt)
        if fault == "kill" and world.rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return wrapped


def main(argv: list[str]) -> int:
    from alflow.labeling import gpaw_job

    fault = os.environ.get(FAULT_ENV, "")
    if fault:
        attempt = int(json.loads(Path(argv[0]).read_text()).get("attempt", 0))
        gpaw_job.calculate = _faulty(gpaw_job.calculate, fault, attempt)
    return gpaw_job.main(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:]))
