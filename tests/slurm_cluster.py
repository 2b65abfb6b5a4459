"""A one-node Slurm on this machine for the ``slurm`` tests (Debian's slurm-wlm + munge).

:func:`ensure_slurm` starts, idempotently, what is missing: a munge key and
``munged``, ``/etc/slurm/slurm.conf`` (node and controller = ``hostname -s``,
the machine's CPUs, one partition ``debug``), ``slurmctld`` and ``slurmd``;
then waits until ``sinfo`` shows the node usable. A cluster that already
answers is used as it is, and a ``slurm.conf`` not written by this helper is
never overwritten. :func:`stop_slurm` stops only the daemons this helper
started (by the process ids in their pid files).

Use the ``slurm_cluster`` fixture (session scope, import it into the test
module)::

    from slurm_cluster import slurm_cluster  # noqa: F401  (tests/ is on sys.path)

Needs root (daemons, ``/etc``). Without the binaries or without root the
fixture fails with the reason: the ``slurm`` tests are part of the default
suite and must not pass silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MARKER = "# written by alflow tests/slurm_cluster.py"
CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
RUN_DIR = Path("/run/alflow-slurm")
SPOOL = Path("/var/spool/alflow-slurm")
PARTITION = "debug"
BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel", "scontrol")


@dataclass
class SlurmCluster:
    """The running one-node cluster.

    Attributes
    ----------
    node
        Node name (``hostname -s``).
    cpus
        CPUs of the node.
    partition
        The partition's name.
    started
        Daemons this helper started (name → pid file).
    """

    node: str
    cpus: int
    partition: str = PARTITION
    started: dict[str, Path] = field(default_factory=dict)


def _run(*command: str, timeout_s: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


def missing_reason() -> str | None:
    """Why a one-node Slurm cannot be started here, or None."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return (
            f"Slurm/munge binaries missing: {' '.join(missing)} (apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    return None


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _node_state(node: str) -> str:
    result = _run("sinfo", "-h", "-N", "-n", node, "-o", "%T", timeout_s=10)
    return result.stdout.strip().lower() if result.returncode == 0 else ""


def _usable(state: str) -> bool:
    return bool(state) and state.rstrip("*") in {"idle", "mixed", "allocated", "completing"}


def _write_munge_key() -> None:
    if MUNGE_KEY.is_file() and MUNGE_KEY.stat().st_size >= 32:
        return
    MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
    MUNGE_KEY.write_bytes(os.urandom(1024))
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)


def _start_munge() -> None:
    if _run("munge", "-n", timeout_s=5).returncode == 0:
        return
    for directory in (Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")):
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "munge", "munge")
    result = _run("runuser", "-u", "munge", "--", "munged", "--force")
    if result.returncode != 0:
        raise RuntimeError(f"munged did not start: {result.stderr.strip()}")


def _slurm_conf(node: str, cpus: int) -> str:
    return f"""{MARKER}
ClusterName=alflowtest
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={SPOOL}/ctld
SlurmdSpoolDir={SPOOL}/d
SlurmctldPidFile={RUN_DIR}/slurmctld.pid
SlurmdPidFile={RUN_DIR}/slurmd.pid
SlurmctldLogFile={SPOOL}/slurmctld.log
SlurmdLogFile={SPOOL}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=30
KillWait=5
NodeName={node} CPUs={cpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def ensure_slurm(timeout_s: float = 60.0) -> SlurmCluster:
    """Start (or find) the one-node cluster; return it once the node is usable.

    Raises
    ------
    RuntimeError
        A daemon did not start or the node did not become usable in time;
        the message carries the daemon's log tail.
    """
    reason = missing_reason()
    if reason is not None:
        raise RuntimeError(reason)
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    cluster = SlurmCluster(node=node, cpus=cpus)
    _write_munge_key()
    _start_munge()
    if _usable(_node_state(node)):
        return cluster
    if CONF.exists() and MARKER not in CONF.read_text():
        raise RuntimeError(f"{CONF} exists and was not written by the tests: not touching it")
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_slurm_conf(node, cpus))
    for directory in (RUN_DIR, SPOOL / "ctld", SPOOL / "d"):
        directory.mkdir(parents=True, exist_ok=True)
    for daemon in ("slurmctld", "slurmd"):
        pid_file = RUN_DIR / f"{daemon}.pid"
        if _pid_alive(pid_file):
            continue
        result = _run(daemon)
        if result.returncode != 0:
            raise RuntimeError(f"{daemon} did not start: {result.stderr.strip()}")
        cluster.started[daemon] = pid_file
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = _node_state(node)
        if _usable(state):
            return cluster
        if state.rstrip("*") in {"down", "drained", "draining", "drain"}:
            _run("scontrol", "update", f"nodename={node}", "state=resume")
        time.sleep(1.0)
    log = ""
    for name in ("slurmctld.log", "slurmd.log"):
        with contextlib.suppress(OSError):
            log += f"--- {name} ---\n" + "\n".join((SPOOL / name).read_text().splitlines()[-10:])
    raise RuntimeError(f"node {node} not usable after {timeout_s} s (state {state!r})\n{log}")


def stop_slurm(cluster: SlurmCluster) -> None:
    """Stop the daemons :func:`ensure_slurm` started (by pid; others are left alone)."""
    for pid_file in cluster.started.values():
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


def wait_for_job_state(job_id: str, states: set[str], timeout_s: float = 60.0) -> str:
    """Poll ``squeue`` until job ``job_id`` is in one of ``states`` (``GONE`` once it left)."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        result = _run("squeue", "-h", "-j", job_id, "-o", "%T", timeout_s=10)
        state = result.stdout.strip() or "GONE"
        if state in states:
            return state
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {state!r} after {timeout_s} s (wanted {states})")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The one-node Slurm, started for the test session and stopped after it."""
    try:
        cluster = ensure_slurm()
    except RuntimeError as exc:
        pytest.fail(f"one-node Slurm: {exc}")
    yield cluster
    stop_slurm(cluster)
