"""Run a campaign to its end in this process (the embedded way, or any LaunchPad).

The runner picks the campaign's READY Fireworks one at a time, launches each
in its own directory under the scratch directory with FireWorks' own Rocket,
and saves the embedded state after every Firework, so ``kill -9`` loses at
most the Firework in flight and the same command resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alflow.config import CampaignConfig
from alflow.settings import Settings
from alflow.store import open_store
from alflow.workflow.builder import CATEGORIES
from alflow.workflow.launchpad import open_launchpad
from alflow.workflow.prefetch import PREFETCH_STEPS, prefetch_batch
from alflow.workflow.submit import prepare_campaign, submit_campaign

__all__ = ["FireworkDone", "RunOutcome", "run_campaign"]

log = logging.getLogger(__name__)

#: Called after every Firework with a :class:`FireworkDone`.
Progress = Callable[["FireworkDone"], None]


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
        Fireworks launched by this call so far.
    """

    name: str
    state: str
    seconds: float
    iteration: int
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
        Fireworks launched by this call.
    fizzled
        Names of FIZZLED Fireworks of the campaign with their errors.
    """

    status: str
    reason: str
    fireworks_run: int
    fizzled: list[str]


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _single_threaded_rocket(embedded: bool) -> Iterator[None]:
    """Keep FireWorks' ping thread away from the embedded (mongomock) server.

    A Rocket pings its launch from a background thread, and pings once more
    when it stops, while the main thread updates the same collections.
    mongomock is not thread-safe, and nothing outside this process watches an
    embedded launch (a killed run resumes from the saved state), so embedded
    Rockets run without the ping thread.
    """
    if not embedded:
        yield
        return
    from fireworks.core import rocket

    original = rocket.start_ping_launch
    rocket.start_ping_launch = lambda launchpad, launch_id: None
    try:
        yield
    finally:
        rocket.start_ping_launch = original


def _next_ready(launchpad: Any, fworker: Any) -> dict[str, Any] | None:
    """The oldest READY Firework this worker may run (lowest fw_id first)."""
    query = {**fworker.query, "state": "READY"}
    return launchpad.fireworks.find_one(query, {"fw_id": 1, "name": 1}, sort=[("fw_id", 1)])


def _prefetch(
    launchpad: Any,
    fworker: Any,
    ready: dict[str, Any],
    store_path: str,
    settings: Settings,
    scratch: Path,
    done: set[int],
) -> None:
    """Compute the READY Fireworks of ``ready``'s step side by side, once each."""
    fw = launchpad.fireworks.find_one(
        {"fw_id": ready["fw_id"]}, {"spec.step": 1, "spec.iteration": 1}
    )
    step, iteration = fw["spec"]["step"], fw["spec"]["iteration"]
    if step not in PREFETCH_STEPS:
        return
    query = {**fworker.query, "state": "READY", "spec.step": step, "spec.iteration": iteration}
    batch = [
        f["fw_id"] for f in launchpad.fireworks.find(query, {"fw_id": 1}) if f["fw_id"] not in done
    ]
    done.update(batch)
    if len(batch) > 1:
        prefetch_batch(
            store_path, [(fw_id, _launch_dir(scratch, fw_id)) for fw_id in batch], settings
        )


def _launch_dir(scratch: Path, fw_id: int) -> Path:
    """The launch directory of a Firework (the same for every rerun)."""
    return scratch / f"fw{fw_id:05d}"


def _progress(launchpad: Any, fw_id: int, seconds: float, count: int) -> FireworkDone:
    fw = launchpad.fireworks.find_one({"fw_id": fw_id}, {"name": 1, "state": 1, "spec": 1})
    spec = fw["spec"]
    query = {
        "spec.campaign": spec["campaign"],
        "spec.iteration": spec["iteration"],
        "spec.step": spec["step"],
    }
    total = launchpad.fireworks.count_documents(query)
    done = launchpad.fireworks.count_documents(
        {**query, "state": {"$in": ["COMPLETED", "FIZZLED"]}}
    )
    return FireworkDone(
        name=fw["name"],
        state=fw["state"],
        seconds=seconds,
        iteration=spec["iteration"],
        step=spec["step"],
        step_done=done,
        step_total=total,
        fireworks_run=count,
    )


def _submitted(dispatcher: Any, fw_id: int) -> float:
    """Submission time of the last ingested job of ``fw_id`` (now if unknown)."""
    return float(dispatcher.submitted_at.get(fw_id, time.time()))


def _fizzled(launchpad: Any, campaign: str) -> list[str]:
    out = []
    for fw in launchpad.fireworks.find(
        {"spec.campaign": campaign, "state": "FIZZLED"}, {"fw_id": 1, "name": 1}
    ):
        out.append(f"{fw['name']} (fw_id {fw['fw_id']})")
    return out


def run_campaign(
    config: CampaignConfig,
    settings: Settings,
    *,
    retry_fizzled: bool = False,
    progress: Progress | None = None,
    max_fireworks: int | None = None,
    dft_queue: Any | None = None,
) -> RunOutcome:
    """Run (or resume) a campaign in this process until nothing is left to run.

    Parameters
    ----------
    config
        The campaign. If the store knows it, the stored configuration must match.
    settings
        Store, scratch directory and worker settings.
    retry_fizzled
        Re-run the campaign's FIZZLED Fireworks first (after fixing their cause).
    progress
        Called after each Firework.
    max_fireworks
        Stop after this many Fireworks (for tests and stepping through).
    dft_queue
        A :class:`~alflow.workflow.offline.QueueOptions`: label Fireworks
        that need a calculation go to Slurm/PBS as offline jobs and are
        ingested when done (:mod:`alflow.workflow.offline`); None: everything
        runs in this process.

    Returns
    -------
    RunOutcome
    """
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import launch_rocket

    prepare_campaign(config)  # every input error before anything is written
    # Fireworks run in their own directories: relative paths must not follow them.
    settings = settings.model_copy(
        update={"scratch_dir": str(Path(settings.scratch_dir).resolve())}
    )
    connection, store = open_store(settings.store, db_name=settings.store_name)
    launchpad = open_launchpad(connection, settings.launchpad_name)
    submit_campaign(config, store, launchpad)
    if retry_fizzled:
        for fw in launchpad.fireworks.find(
            {"spec.campaign": config.name, "state": "FIZZLED"}, {"fw_id": 1}
        ):
            launchpad.rerun_fw(fw["fw_id"])
        if store.campaign(config.name)["status"] == "failed":
            store.set_campaign_status(config.name, "running")
    connection.save()

    env = settings.model_dump()
    env["store"] = connection.store
    fworker = FWorker(
        name="alflow-embedded",
        category=list(CATEGORIES),
        query={"spec.campaign": config.name},
        env=env,
    )
    scratch = Path(settings.scratch_dir).resolve() / config.name
    count = 0
    prefetched: set[int] = set()
    dispatcher = None
    if dft_queue is not None:
        from alflow.workflow.offline import OfflineDispatcher

        dispatcher = OfflineDispatcher(launchpad, store, settings, fworker, dft_queue)
        dispatcher.adopt_running(config.name)
    while max_fireworks is None or count < max_fireworks:
        if dispatcher is not None:
            for fw_id, what in dispatcher.poll():
                connection.save()
                if what == "RERUN":
                    continue
                count += 1
                if progress is not None:
                    job_s = time.time() - _submitted(dispatcher, fw_id)
                    progress(_progress(launchpad, fw_id, job_s, count))
            if max_fireworks is not None and count >= max_fireworks:
                break
        ready = _next_ready(launchpad, fworker)
        if ready is None:
            if dispatcher is not None and dispatcher.in_flight:
                time.sleep(dispatcher.options.poll_s)
                continue
            break
        started = time.perf_counter()
        directory = _launch_dir(scratch, ready["fw_id"])
        if dispatcher is not None and dispatcher.accepts(ready["fw_id"]):
            dispatcher.submit(ready["fw_id"], directory)
            connection.save()
            continue
        if connection.embedded is not None and settings.parallel_processes > 1:
            _prefetch(launchpad, fworker, ready, connection.store, settings, scratch, prefetched)
        log.info("start %s", ready["name"])
        with (
            _working_directory(directory),
            _single_threaded_rocket(connection.embedded is not None),
        ):
            launch_rocket(launchpad, fworker, fw_id=ready["fw_id"], strm_lvl="ERROR")
        connection.save()
        count += 1
        if progress is not None:
            progress(_progress(launchpad, ready["fw_id"], time.perf_counter() - started, count))

    campaign = store.campaign(config.name)
    fizzled = _fizzled(launchpad, config.name)
    status, reason = campaign["status"], campaign.get("reason") or ""
    if status == "running" and (max_fireworks is None or count < max_fireworks):
        status = "stalled"
        reason = (
            f"{len(fizzled)} Firework(s) FIZZLED and nothing else can run: {', '.join(fizzled)}; "
            "fix the cause and run again with --retry-fizzled"
        )
    return RunOutcome(status=status, reason=reason, fireworks_run=count, fizzled=fizzled)
