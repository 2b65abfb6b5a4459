"""Lost runs of a dead runner's workers are rerun, even when the dead worker held the Workflow lock.

A ``kill -9`` that lands while a worker is inside FireWorks' ``WFLock``
leaves the Workflow locked for good; FireWorks' ``rerun_fw`` would wait
300 s for it and raise ``LockedWorkflowError``. ``recover_lost_runs`` clears
such a stale lock first (seen once in the kill -9/resume test of test_loop).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from alflow.workflow.pool import LOCAL_PREFIX, WorkerPool
from alflow.workflow.recovery import clear_stale_locks, recover_lost_runs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def launchpad(mongo_uri: str, db_names: dict[str, str]) -> Any:
    from fireworks import LaunchPad

    pad = LaunchPad(
        host=mongo_uri, name=db_names["launchpad_name"], uri_mode=True, strm_lvl="ERROR"
    )
    pad._restart_ids(1, 1)
    return pad


def _running_firework(launchpad: Any, campaign: str, runner_pid: int) -> int:
    """Add a one-Firework Workflow and check it out as RUNNING by a worker of ``runner_pid``."""
    from fireworks import Firework, FWorker, ScriptTask, Workflow

    fw = Firework(ScriptTask.from_str("true"), spec={"campaign": campaign}, name="victim")
    launchpad.add_wf(Workflow([fw]))
    name = f"{LOCAL_PREFIX}:{socket.gethostname()}:{runner_pid}:md-0"
    checked_out, _launch_id = launchpad.checkout_fw(FWorker(name=name), launch_dir=".")
    assert checked_out is not None
    return checked_out.fw_id


def test_lost_run_with_a_stale_workflow_lock_is_rerun(
    launchpad: Any, server_settings: Any, tmp_path: Path
) -> None:
    fw_id = _running_firework(launchpad, "lockcase", _dead_pid())
    launchpad.workflows.update_one({"nodes": fw_id}, {"$set": {"locked": True}})
    pool = WorkerPool("lockcase", server_settings, tmp_path / "scratch")

    start_s = time.monotonic()
    assert recover_lost_runs(launchpad, "lockcase", pool) == [fw_id]
    assert time.monotonic() - start_s < 60  # FireWorks alone would wait 300 s, then raise
    assert launchpad.get_fw_by_id(fw_id).state == "READY"
    assert "locked" not in launchpad.workflows.find_one({"nodes": fw_id})


def test_a_lock_released_in_time_is_left_to_its_holder(launchpad: Any) -> None:
    fw_id = _running_firework(launchpad, "briefcase", _dead_pid())
    # unlocked before the wait ends: nothing is cleared
    assert clear_stale_locks(launchpad, [fw_id], wait_s=0.5) == []
    launchpad.workflows.update_one({"nodes": fw_id}, {"$set": {"locked": True}})
    assert clear_stale_locks(launchpad, [fw_id], wait_s=0.5) == [fw_id]
    assert "locked" not in launchpad.workflows.find_one({"nodes": fw_id})
