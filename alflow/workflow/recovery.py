"""Lost runs and connection failures of a campaign's Fireworks, recovered the FireWorks way.

- A Firework RUNNING in the LaunchPad whose local worker is gone (its runner
  was killed, the worker crashed, or the server restarted under its Rocket)
  is a lost run: FireWorks' own ``detect_lostruns(rerun=True)`` reruns it.
- A Firework that FIZZLED because the database connection dropped (not
  because its step failed) is rerun a few times.

Workers of other machines and of other live runs are never touched; on a
cluster, ``lpad detect_lostruns --rerun`` does the same by ping age.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from alflow.procutil import pid_alive
from alflow.workflow.pool import WorkerPool, parse_local_name

__all__ = [
    "CONNECTION_ERRORS",
    "clear_stale_locks",
    "recover_lost_runs",
    "rerun_connection_fizzles",
]

log = logging.getLogger(__name__)

#: Exception names in a FIZZLED launch's stack trace that mean "the server went away".
CONNECTION_ERRORS = (
    "AutoReconnect",
    "ServerSelectionTimeoutError",
    "NetworkTimeout",
    "ConnectionFailure",
    "NotPrimaryError",
)
_MAX_CONNECTION_RERUNS = 3
_reruns: dict[int, int] = {}
#: A Workflow lock held this long by nobody alive is stale (FireWorks holds one for ms).
STALE_LOCK_WAIT_S = 3.0


def _is_lost(launch: dict[str, Any], pool: WorkerPool) -> bool:
    name = (launch.get("fworker") or {}).get("name", "")
    owner = parse_local_name(name)
    if owner is None or owner[0] != socket.gethostname():
        return False  # another machine's worker: its own ping tells
    if pool.owns(name):
        return pool.current_fw(name) != launch["fw_id"]
    return not pid_alive(owner[1])  # a worker of an earlier run, lost with its runner


def recover_lost_runs(launchpad: Any, campaign: str, pool: WorkerPool) -> list[int]:
    """Rerun the campaign's Fireworks whose local worker is gone; return their fw_ids.

    A RUNNING Firework goes through FireWorks' ``detect_lostruns(rerun=True)``.
    A RESERVED one with a RUNNING launch (the server died in the middle of
    the worker's checkout: launch written, Firework not) is one FireWorks'
    tools miss: its launch is marked FIZZLED and the Firework rerun.
    """
    states = {
        fw["fw_id"]: fw["state"]
        for fw in launchpad.fireworks.find(
            {"spec.campaign": campaign, "state": {"$in": ["RUNNING", "RESERVED"]}},
            {"fw_id": 1, "state": 1},
        )
    }
    if not states:
        return []
    launches = launchpad.launches.find(
        {"fw_id": {"$in": list(states)}, "state": "RUNNING"},
        {"launch_id": 1, "fw_id": 1, "fworker": 1},
    )
    lost = [launch for launch in launches if _is_lost(launch, pool)]
    if not lost:
        return []
    clear_stale_locks(launchpad, [launch["fw_id"] for launch in lost])
    from fireworks.core.launchpad import LockedWorkflowError

    running = [launch["launch_id"] for launch in lost if states[launch["fw_id"]] == "RUNNING"]
    try:
        if running:
            launchpad.detect_lostruns(
                expiration_secs=0, rerun=True, launch_query={"launch_id": {"$in": running}}
            )
        for launch in lost:
            if states[launch["fw_id"]] == "RESERVED":
                launchpad.mark_fizzled(launch["launch_id"])
                launchpad.rerun_fw(launch["fw_id"])
    except LockedWorkflowError as exc:  # held by a live process after all: next poll
        log.warning("lost runs not rerun yet, a Workflow is locked: %s", exc)
        return []
    fw_ids = sorted({launch["fw_id"] for launch in lost})
    if fw_ids:
        log.warning("lost runs (worker gone) rerun: fw_id %s", ", ".join(map(str, fw_ids)))
    return fw_ids


def clear_stale_locks(
    launchpad: Any, fw_ids: list[int], wait_s: float = STALE_LOCK_WAIT_S
) -> list[int]:
    """Unlock the Workflows of lost Fireworks whose lock outlives ``wait_s``; return their fw_ids.

    A worker killed (``kill -9``) inside FireWorks' ``WFLock`` leaves its
    Workflow locked for good; ``rerun_fw`` would then wait 300 s and raise
    ``LockedWorkflowError``. Live processes hold the lock for milliseconds,
    so a lock still set after ``wait_s`` belongs to the dead worker.
    """
    query = {"nodes": {"$in": list(fw_ids)}, "locked": {"$exists": True}}
    deadline_s = time.monotonic() + wait_s
    locked = list(launchpad.workflows.find(query, {"nodes": 1}))
    while locked and time.monotonic() < deadline_s:
        time.sleep(0.2)
        locked = list(launchpad.workflows.find(query, {"nodes": 1}))
    stale = [fw_id for wf in locked for fw_id in wf["nodes"] if fw_id in fw_ids]
    for wf in locked:
        launchpad.workflows.update_one(
            {"_id": wf["_id"], "locked": {"$exists": True}}, {"$unset": {"locked": ""}}
        )
    if stale:
        log.warning("stale Workflow lock of a dead worker cleared: fw_id %s", stale)
    return stale


def _connection_failure(launchpad: Any, fw_id: int) -> bool:
    launch = launchpad.launches.find_one(
        {"fw_id": fw_id, "state": "FIZZLED"}, {"action": 1}, sort=[("launch_id", -1)]
    )
    exception = ((launch or {}).get("action") or {}).get("stored_data", {}).get("_exception", {})
    trace = str(exception.get("_stacktrace", ""))
    return any(name in trace for name in CONNECTION_ERRORS)


def rerun_connection_fizzles(launchpad: Any, campaign: str) -> list[int]:
    """Rerun Fireworks that FIZZLED on a lost database connection (a few times each)."""
    rerun = []
    for fw in launchpad.fireworks.find(
        {"spec.campaign": campaign, "state": "FIZZLED"}, {"fw_id": 1}
    ):
        fw_id = fw["fw_id"]
        if _reruns.get(fw_id, 0) >= _MAX_CONNECTION_RERUNS or not _connection_failure(
            launchpad, fw_id
        ):
            continue
        _reruns[fw_id] = _reruns.get(fw_id, 0) + 1
        launchpad.rerun_fw(fw_id)
        rerun.append(fw_id)
    if rerun:
        log.warning("rerun after a lost database connection: fw_id %s", ", ".join(map(str, rerun)))
    return rerun
