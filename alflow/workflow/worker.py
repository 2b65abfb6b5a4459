"""One FireWorks worker process of ``alflow run``: a campaign's Fireworks of some categories.

``alflow run`` starts several of these against the store's server, by
category (train/md, dft, service), the way a cluster runs ``rlaunch``
workers. Each loops: pick the oldest READY Firework it may run, launch it
with FireWorks' own Rocket in that Firework's launch directory
(``<scratch>/<campaign>/fwNNNNN``, the same for every rerun, so a rerun finds
what the earlier launch left there), repeat. The checkout is FireWorks'
atomic ``find_one_and_update`` on ``state: READY`` with the worker's query
narrowed to that Firework, so two workers never run one Firework.

The worker writes ``<scratch>/<campaign>/workers/<name>.json`` with the
Firework it is launching: the runner reads it to tell a lost run (RUNNING in
the LaunchPad, but its worker is gone or doing something else) from a
running one.

Usage (by the runner)::

    python -m alflow.workflow.worker --campaign NAME --name NAME --category train --category md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alflow.settings import load_settings
from alflow.store import DatabaseError, connect
from alflow.workflow.launchpad import open_launchpad

__all__ = ["launch_dir", "launch_one", "main", "run_worker", "worker_state_path"]

log = logging.getLogger(__name__)


def launch_dir(scratch: Path, fw_id: int) -> Path:
    """The launch directory of a Firework (the same for every rerun)."""
    return scratch / f"fw{fw_id:05d}"


def worker_state_path(scratch: Path, name: str) -> Path:
    """Where worker ``name`` records the Firework it is launching."""
    return scratch / "workers" / f"{name}.json"


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _write_state(path: Path, fw_id: int | None) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "fw_id": fw_id, "time": time.time()}))
    tmp.replace(path)


def _next_ready(launchpad: Any, fworker: Any) -> int | None:
    """The fw_id of the READY Firework this worker should run next (priority, then oldest)."""
    doc = launchpad.fireworks.find_one(
        {**fworker.query, "state": "READY"},
        {"fw_id": 1},
        sort=[("spec._priority", -1), ("fw_id", 1)],
    )
    return None if doc is None else int(doc["fw_id"])


def launch_one(launchpad: Any, fworker: Any, fw_id: int, scratch: Path) -> bool:
    """Launch ``fw_id`` in its launch directory if ``fworker`` wins its checkout; True if it ran.

    The worker's query is narrowed to ``fw_id``, so FireWorks' atomic checkout
    (``state: READY``) decides between workers that want the same Firework.
    """
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import launch_rocket

    narrowed = FWorker(
        name=fworker.name,
        category=fworker.category,
        query={**json.loads(json.dumps(fworker._query)), "fw_id": fw_id},
        env=fworker.env,
    )
    with _working_directory(launch_dir(scratch, fw_id)):
        return bool(launch_rocket(launchpad, narrowed, strm_lvl="ERROR"))


def run_worker(
    launchpad: Any, fworker: Any, scratch: Path, *, idle_s: float = 0.5, max_launches: int = 0
) -> int:
    """Launch Fireworks until SIGTERM (between Fireworks) or ``max_launches``.

    A database error (the server restarting) is logged and retried; the
    Firework it interrupted is recovered by the runner as a lost run.

    Returns
    -------
    int
        Fireworks this worker ran.
    """
    stopping = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    state = worker_state_path(scratch, fworker.name)
    state.parent.mkdir(parents=True, exist_ok=True)
    launched = 0
    while not stopping and (max_launches <= 0 or launched < max_launches):
        try:
            fw_id = _next_ready(launchpad, fworker)
            if fw_id is None:
                _write_state(state, None)
                time.sleep(idle_s)
                continue
            _write_state(state, fw_id)
            if launch_one(launchpad, fworker, fw_id, scratch):
                launched += 1
            _write_state(state, None)
        except DatabaseError as exc:
            log.warning("worker %s: database error, retrying: %s", fworker.name, exc)
            time.sleep(1.0)
    return launched


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process (settings from ``ALFLOW_*``)."""
    from fireworks import FWorker

    parser = argparse.ArgumentParser(prog="python -m alflow.workflow.worker")
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--name", required=True, help="FireWorker name (unique per worker)")
    parser.add_argument("--category", action="append", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the runner: it stops us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    connection = connect(settings.store, settings=settings)
    launchpad = open_launchpad(connection, settings.launchpad_name, strm_lvl="ERROR")
    fworker = FWorker(
        name=args.name,
        category=args.category,
        query={"spec.campaign": args.campaign},
        env=settings.model_dump(),
    )
    scratch = Path(settings.scratch_dir).resolve() / args.campaign
    count = run_worker(launchpad, fworker, scratch)
    log.info("worker %s stops after %d Fireworks", args.name, count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
