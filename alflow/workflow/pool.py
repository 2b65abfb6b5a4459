"""The worker processes of ``alflow run``: started by category, watched, stopped.

Each worker is ``python -m alflow.workflow.worker`` with the store's URI in
``ALFLOW_STORE``; its FireWorker name ``alflow-local:<host>:<runner pid>:<group>-<i>``
tells later runs whose Fireworks a dead runner left behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from alflow.procutil import die_with_parent
from alflow.settings import Settings
from alflow.workflow.worker import worker_state_path

__all__ = ["LOCAL_PREFIX", "WorkerGroup", "WorkerPool", "parse_local_name", "worker_groups"]

log = logging.getLogger(__name__)

#: FireWorker names of ``alflow run``'s workers start with this.
LOCAL_PREFIX = "alflow-local"
_MAX_RESTARTS = 5


@dataclass(frozen=True)
class WorkerGroup:
    """``count`` workers for ``categories`` (e.g. 2 for train and md)."""

    name: str
    categories: tuple[str, ...]
    count: int


def worker_groups(settings: Settings, *, dft: bool = True) -> list[WorkerGroup]:
    """The workers of a local run: train/md side by side, dft by slots, one service.

    ``dft_workers`` 0 means as many as the cores hold jobs of ``mpi_ranks`` ranks.
    """
    groups = [WorkerGroup("trainmd", ("train", "md"), settings.parallel_processes)]
    if dft:
        slots = settings.dft_workers or max(1, (os.cpu_count() or 1) // settings.mpi_ranks)
        groups.append(WorkerGroup("dft", ("dft",), slots))
    groups.append(WorkerGroup("service", ("service",), 1))
    return groups


def parse_local_name(name: str) -> tuple[str, int] | None:
    """(host, runner pid) of a local worker's FireWorker name, else None."""
    parts = name.split(":")
    if len(parts) != 4 or parts[0] != LOCAL_PREFIX or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


class WorkerPool:
    """The worker processes of one campaign run.

    Parameters
    ----------
    campaign
        The campaign's name (the workers' query).
    settings
        The workers' settings (``store`` is the server's URI).
    scratch
        ``<scratch_dir>/<campaign>``: launch directories, worker logs and states.
    """

    def __init__(self, campaign: str, settings: Settings, scratch: Path) -> None:
        self.campaign, self.settings, self.scratch = campaign, settings, scratch
        self.prefix = f"{LOCAL_PREFIX}:{socket.gethostname()}:{os.getpid()}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.categories: dict[str, tuple[str, ...]] = {}
        self.restarts = 0

    def _env(self, categories: tuple[str, ...]) -> dict[str, str]:
        env = dict(os.environ)
        env.update({f"ALFLOW_{k.upper()}": str(v) for k, v in self.settings.model_dump().items()})
        env.pop("ALFLOW_SETTINGS_FILE", None)  # the values above are the resolved settings
        threads = 1 if categories in (("dft",), ("service",)) else self.settings.torch_threads
        env["OMP_NUM_THREADS"] = str(threads)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, name: str, categories: tuple[str, ...]) -> None:
        logs = self.scratch / "workers"
        logs.mkdir(parents=True, exist_ok=True)
        worker_state_path(self.scratch, name).unlink(missing_ok=True)
        command = [sys.executable, "-m", "alflow.workflow.worker"]
        command += ["--campaign", self.campaign, "--name", name]
        for category in categories:
            command += ["--category", category]
        with open(logs / f"{name.rsplit(':', 1)[1]}.log", "ab") as out:
            self.processes[name] = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(categories),
                cwd=self.scratch,
                preexec_fn=die_with_parent(),  # a killed runner takes its workers with it
            )
        self.categories[name] = categories

    def start(self, groups: list[WorkerGroup]) -> None:
        """Start every worker of ``groups``."""
        for group in groups:
            for index in range(group.count):
                self._spawn(f"{self.prefix}:{group.name}-{index}", group.categories)
        summary = ", ".join(f"{g.count} {'/'.join(g.categories)}" for g in groups)
        log.info(
            "started %d workers (%s); logs in %s",
            len(self.processes),
            summary,
            self.scratch / "workers",
        )

    def owns(self, name: str) -> bool:
        """True if ``name`` is one of this pool's workers."""
        return name in self.processes

    def alive(self, name: str) -> bool:
        """True if worker ``name`` is running."""
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def current_fw(self, name: str) -> int | None:
        """The Firework worker ``name`` is launching now (None: idle, dead or unknown)."""
        if not self.alive(name):
            return None
        try:
            state = json.loads(worker_state_path(self.scratch, name).read_text())
        except (OSError, ValueError):
            return None
        return state.get("fw_id")

    def restart_dead(self) -> None:
        """Start again a worker that exited (a crash; its Firework becomes a lost run)."""
        for name, process in list(self.processes.items()):
            code = process.poll()
            if code is None:
                continue
            if self.restarts >= _MAX_RESTARTS:
                raise RuntimeError(
                    f"worker {name} exited with code {code}, {self.restarts} restarts already: "
                    f"see {self.scratch / 'workers'}"
                )
            self.restarts += 1
            log.warning("worker %s exited with code %s: starting it again", name, code)
            self._spawn(name, self.categories[name])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every worker (each stops between Fireworks), then SIGKILL the stragglers."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
