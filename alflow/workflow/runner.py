"""Run a campaign to its end on this machine: FireWorks workers by category, one server.

``alflow run`` submits the campaign, then starts worker processes
(:mod:`alflow.workflow.worker`) against the store's server, the way a cluster
runs ``rlaunch`` workers: ``settings.parallel_processes`` train/md workers (so
members and walkers of an iteration run side by side), dft workers up to the
slots the cores hold, and one service worker. This process only watches: it
reports each finished Firework, recovers lost runs (a worker killed
mid-Firework, or the server restarted under it), restarts a local server that
died, and stops the workers when the campaign has ended or nothing can run.

``kill -9`` of the runner takes its workers with it (they die with their
parent); the server keeps running and the next ``alflow run`` finds it, marks
the Fireworks its dead workers left RUNNING as lost runs and reruns them in
the same launch directories.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alflow.config import CampaignConfig
from alflow.settings import Settings
from alflow.store import ServerConnectionError, open_store
from alflow.store.server import ensure_server, read_record, release_server
from alflow.workflow.dispatch import OfflineDispatcher
from alflow.workflow.launchpad import open_launchpad
from alflow.workflow.pool import WorkerPool, worker_groups
from alflow.workflow.recovery import recover_lost_runs, rerun_connection_fizzles
from alflow.workflow.submit import prepare_campaign, submit_campaign
from alflow.workflow.worker import launch_dir, launch_one

__all__ = ["FireworkDone", "RunOutcome", "run_campaign"]

log = logging.getLogger(__name__)

#: Called after every Firework with a :class:`FireworkDone`.
Progress = Callable[["FireworkDone"], None]
_POLL_S = 1.0
_ACTIVE = ("READY", "RESERVED", "RUNNING")


@dataclass(frozen=True)
class FireworkDone:
    """Progress after one Firework.

    Attributes
    ----------
    name, state
        The Firework's name and its state after the launch (COMPLETED, FIZZLED).
    seconds
        Wall time of the launch (s).
    iteration, step
        Where the campaign is.
    step_done, step_total
        Fireworks of this step in this iteration that have finished / exist.
    fireworks_run
        Fireworks finished during this call so far.
    """

    name: str
    state: str
    seconds: float
    iteration: int | str
    step: str
    step_done: int
    step_total: int
    fireworks_run: int


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended.

    Attributes
    ----------
    status
        The campaign's status: converged, stopped, failed, or ``stalled``
        (Fireworks FIZZLED and nothing is left to run).
    reason
        Why, in words.
    fireworks_run
        Fireworks finished during this call.
    fizzled
        Names of FIZZLED Fireworks of the campaign with their errors.
    """

    status: str
    reason: str
    fireworks_run: int
    fizzled: list[str]


class _Tracker:
    """Reports Fireworks of a campaign that finish while the runner watches."""

    def __init__(self, launchpad: Any, campaign: str, progress: Progress | None) -> None:
        self.launchpad, self.campaign, self.progress = launchpad, campaign, progress
        self.states = self._states()
        self.count = 0

    def _states(self) -> dict[int, dict[str, Any]]:
        projection = {"fw_id": 1, "name": 1, "state": 1, "updated_on": 1, "spec.iteration": 1}
        projection["spec.step"] = 1
        return {
            fw["fw_id"]: fw
            for fw in self.launchpad.fireworks.find({"spec.campaign": self.campaign}, projection)
        }

    def poll(self) -> dict[int, dict[str, Any]]:
        """Report what finished since the last poll, in order; return the current states."""
        states = self._states()
        finished = [
            fw
            for fw_id, fw in states.items()
            if fw["state"] in ("COMPLETED", "FIZZLED")
            and self.states.get(fw_id, {}).get("state") != fw["state"]
        ]
        before = self.states
        self.states = states
        for fw in sorted(finished, key=lambda f: (f.get("updated_on") or 0, f["fw_id"])):
            self.count += 1
            if self.progress is not None:
                self.progress(self._done(fw, before))
            before = {**before, fw["fw_id"]: fw}
        return states

    def _done(self, fw: dict[str, Any], known: dict[int, dict[str, Any]]) -> FireworkDone:
        """Progress of ``fw``, counting its step's Fireworks reported before it."""
        spec = fw.get("spec", {})
        same = [
            f
            for f in self.states.values()
            if f.get("spec", {}).get("iteration") == spec.get("iteration")
            and f.get("spec", {}).get("step") == spec.get("step")
        ]
        done = sum(known.get(f["fw_id"], {}).get("state") in ("COMPLETED", "FIZZLED") for f in same)
        launch = self.launchpad.launches.find_one(
            {"fw_id": fw["fw_id"]}, {"runtime_secs": 1}, sort=[("launch_id", -1)]
        )
        return FireworkDone(
            name=fw["name"],
            state=fw["state"],
            seconds=float((launch or {}).get("runtime_secs") or 0.0),
            iteration=spec.get("iteration", -1),
            step=str(spec.get("step", "?")),
            step_done=done + 1,
            step_total=len(same),
            fireworks_run=self.count,
        )


def _fizzled(launchpad: Any, campaign: str) -> list[str]:
    return [
        f"{fw['name']} (fw_id {fw['fw_id']})"
        for fw in launchpad.fireworks.find(
            {"spec.campaign": campaign, "state": "FIZZLED"}, {"fw_id": 1, "name": 1}
        )
    ]


def _retry_fizzled(launchpad: Any, store: Any, campaign: str) -> None:
    for fw in launchpad.fireworks.find(
        {"spec.campaign": campaign, "state": "FIZZLED"}, {"fw_id": 1}
    ):
        launchpad.rerun_fw(fw["fw_id"])
    if store.campaign(campaign)["status"] == "failed":
        store.set_campaign_status(campaign, "running")


def _keep_server_alive(connection: Any) -> None:
    """Restart the local server if it died (same port, same data)."""
    local = connection.local
    if local is None or read_record(local.store_dir) is not None:
        return
    log.warning("the local server of %s died: restarting it", local.store_dir)
    ensure_server(local.store_dir, program=local.program)


def _offline_step(dispatcher: Any, launchpad: Any, fworker: Any, scratch: Path) -> None:
    """Offline mode: submit READY label Fireworks as jobs, run the quick dft ones here."""
    dispatcher.poll()
    query = {**fworker.query, "state": "READY"}
    for fw in list(launchpad.fireworks.find(query, {"fw_id": 1}, sort=[("fw_id", 1)])):
        directory = launch_dir(scratch, fw["fw_id"])
        if dispatcher.accepts(fw["fw_id"]):
            dispatcher.submit(fw["fw_id"], directory)
        else:
            launch_one(launchpad, fworker, fw["fw_id"], scratch)


def _finished(states: dict[int, dict[str, Any]], dispatcher: Any) -> bool:
    active = any(fw["state"] in _ACTIVE for fw in states.values())
    return not active and not (dispatcher is not None and dispatcher.in_flight)


def run_campaign(
    config: CampaignConfig,
    settings: Settings,
    *,
    retry_fizzled: bool = False,
    progress: Progress | None = None,
    dft_queue: Any | None = None,
    max_fireworks: int | None = None,
) -> RunOutcome:
    """Run (or resume) a campaign with worker processes until nothing is left to run.

    Parameters
    ----------
    config
        The campaign. If the store knows it, the stored configuration must match.
    settings
        Store, scratch directory and worker settings.
    retry_fizzled
        Re-run the campaign's FIZZLED Fireworks first (after fixing their cause).
    progress
        Called after each Firework finishes.
    dft_queue
        A :class:`~alflow.workflow.dispatch.QueueOptions`: label Fireworks
        that need a calculation go to Slurm/PBS as offline jobs and are
        ingested here (:mod:`alflow.workflow.offline`); None: dft workers.
    max_fireworks
        Stop after this many Fireworks have finished (for tests and stepping
        through): the workers are killed, and what they were running is
        recovered as lost runs by the next run.

    Returns
    -------
    RunOutcome
    """
    prepare_campaign(config)  # every input error before anything is written
    # Fireworks run in their own directories: relative paths must not follow them.
    settings = settings.model_copy(
        update={"scratch_dir": str(Path(settings.scratch_dir).resolve())}
    )
    connection, store = open_store(settings.store, db_name=settings.store_name, settings=settings)
    try:
        launchpad = open_launchpad(connection, settings.launchpad_name)
        submit_campaign(config, store, launchpad)
        worker_settings = settings.model_copy(update={"store": connection.uri})
        pool = WorkerPool(config.name, worker_settings, Path(settings.scratch_dir) / config.name)
        recover_lost_runs(launchpad, config.name, pool)
        if retry_fizzled:
            _retry_fizzled(launchpad, store, config.name)
        dispatcher = None
        if dft_queue is not None:
            dispatcher = _offline_dispatcher(
                launchpad, store, worker_settings, config.name, dft_queue
            )
        tracker = _Tracker(launchpad, config.name, progress)
        pool.start(worker_groups(worker_settings, dft=dispatcher is None))
        early = _watch(connection, launchpad, pool, tracker, dispatcher, max_fireworks)
        return _outcome(store, launchpad, config.name, early, tracker.count)
    finally:
        if connection.local is not None:  # the last user stops it (an unpinned local server)
            release_server(connection.local.store_dir)


def _offline_dispatcher(
    launchpad: Any, store: Any, settings: Settings, campaign: str, options: Any
) -> Any:
    """The dispatcher that sends the campaign's label Fireworks to the batch queue."""
    from fireworks import FWorker

    fworker = FWorker(
        name=f"alflow-offline@{socket.gethostname()}",
        category=["dft"],
        query={"spec.campaign": campaign},
        env=settings.model_dump(),
    )
    dispatcher = OfflineDispatcher(launchpad, store, settings, fworker, options)
    dispatcher.adopt_running(campaign)
    return dispatcher


def _watch(
    connection: Any,
    launchpad: Any,
    pool: WorkerPool,
    tracker: _Tracker,
    dispatcher: Any,
    max_fireworks: int | None,
) -> bool:
    """Watch until nothing can run (False) or ``max_fireworks`` finished (True); stop the pool."""
    campaign, quiet_polls, early = pool.campaign, 0, False
    try:
        while True:
            time.sleep(_POLL_S)
            try:
                _keep_server_alive(connection)
                rerun_connection_fizzles(launchpad, campaign)
                pool.restart_dead()
                recover_lost_runs(launchpad, campaign, pool)
                if dispatcher is not None:
                    _offline_step(dispatcher, launchpad, dispatcher.fworker, pool.scratch)
                states = tracker.poll()
            except ServerConnectionError as exc:  # the server went away: restart it next poll
                log.warning("database connection lost (%s): retrying", exc)
                quiet_polls = 0
                continue
            if max_fireworks is not None and tracker.count >= max_fireworks:
                early = True
                return early
            # two quiet polls in a row: a Firework that just completed may not
            # have made its children READY yet at the first
            quiet_polls = quiet_polls + 1 if _finished(states, dispatcher) else 0
            if quiet_polls >= 2:
                return early
    except BaseException:  # Ctrl-C, SIGTERM: stop the workers now; reruns recover their work
        early = True
        raise
    finally:
        pool.stop(timeout_s=0.0 if early else 30.0)


def _outcome(store: Any, launchpad: Any, campaign: str, early: bool, count: int) -> RunOutcome:
    """How the run ended: the campaign's status, or ``stalled`` if it is still running."""
    doc = store.campaign(campaign)
    fizzled = _fizzled(launchpad, campaign)
    status, reason = doc["status"], doc.get("reason") or ""
    if status == "running" and not early:
        status = "stalled"
        reason = (
            f"{len(fizzled)} Firework(s) FIZZLED and nothing else can run: {', '.join(fizzled)}; "
            "fix the cause and run again with --retry-fizzled"
        )
    return RunOutcome(status=status, reason=reason, fireworks_run=count, fizzled=fizzled)
