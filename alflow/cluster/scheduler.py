"""Ask a batch system about one job: Slurm (``squeue``) or PBS (``qstat``).

Only what the offline dispatcher needs: is the job still queued or
running, has it left the queue, or did the scheduler not answer (then
nothing is concluded: a controller that is briefly down must not make
alflow re-run jobs that are fine).
"""

from __future__ import annotations

import logging
import subprocess

__all__ = ["ACTIVE_STATES", "cancel_job", "job_state"]

log = logging.getLogger(__name__)

#: Slurm states of a job that still holds or waits for resources.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
_PBS_ACTIVE = {
    "Q": "PENDING",
    "H": "PENDING",
    "W": "PENDING",
    "T": "PENDING",
    "R": "RUNNING",
    "E": "COMPLETING",
    "B": "RUNNING",
    "S": "SUSPENDED",
    "U": "SUSPENDED",
}


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s: %s", command[0], exc)
        return None


def job_state(scheduler: str, job_id: str, *, timeout_s: float = 30.0) -> str:
    """State of a batch job.

    Parameters
    ----------
    scheduler
        ``slurm`` or ``pbs``.
    job_id
        The id the submit command printed.
    timeout_s
        How long to wait for the scheduler's answer (s).

    Returns
    -------
    str
        An active state (``PENDING``, ``RUNNING``, ``COMPLETING``, ...),
        ``"gone"`` when the job has ended or the scheduler no longer knows
        it, or ``"unknown"`` when the scheduler did not answer.
    """
    if scheduler == "slurm":
        result = _run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], timeout_s)
        if result is None:
            return "unknown"
        if result.returncode != 0:
            if "invalid job id" in result.stderr.lower():
                return "gone"
            log.warning("squeue -j %s: %s", job_id, result.stderr.strip())
            return "unknown"
        state = result.stdout.strip().split("\n")[0].strip().upper()
        return state if state in ACTIVE_STATES else "gone"
    if scheduler == "pbs":
        result = _run(["qstat", "-f", str(job_id)], timeout_s)
        if result is None:
            return "unknown"
        if result.returncode != 0:
            text = (result.stderr + result.stdout).lower()
            if "unknown job" in text or "job has finished" in text:
                return "gone"
            log.warning("qstat -f %s: %s", job_id, result.stderr.strip())
            return "unknown"
        for line in result.stdout.splitlines():
            if line.strip().startswith("job_state"):
                code = line.split("=", 1)[1].strip()
                return _PBS_ACTIVE.get(code, "gone")
        return "gone"
    raise ValueError(f"unknown scheduler {scheduler!r} (expected 'slurm' or 'pbs')")


def cancel_job(scheduler: str, job_id: str) -> bool:
    """Cancel a job (``scancel`` / ``qdel``); True if the scheduler accepted."""
    command = ["scancel", str(job_id)] if scheduler == "slurm" else ["qdel", str(job_id)]
    result = _run(command, 30.0)
    return result is not None and result.returncode == 0
