"""Compute the walkers or members of one step side by side (embedded runs).

The embedded store has one writer, so Fireworks are launched one at a time.
Their heavy work need not be: before the runner launches a batch of READY
train or explore Fireworks, it starts one helper process per Firework (at
most ``settings.parallel_processes`` at once). Each helper opens a read-only
snapshot of the saved store, runs the same step function in the Firework's
launch directory and exits; whatever it writes to its snapshot is discarded.
The result it leaves in the directory (a trained model, a walker's frames) is
keyed by a fingerprint of its inputs (:mod:`alflow.workcache`), so when the
runner then launches the Firework, the step finds it and records it in the
store. A helper that fails changes nothing: the Firework computes as usual.

Usage (by the runner): ``python -m alflow.workflow.prefetch STORE FW_ID LAUNCH_DIR``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from alflow.settings import Settings

__all__ = ["PREFETCH_STEPS", "main", "prefetch_batch"]

log = logging.getLogger(__name__)

#: Steps whose work a helper process can do ahead of the Firework.
PREFETCH_STEPS = ("train", "explore")


def prefetch_batch(
    store_path: str, jobs: Sequence[tuple[int, Path]], settings: Settings
) -> dict[int, int]:
    """Run the helpers for ``jobs`` ((fw_id, launch dir)), a few at a time.

    Returns
    -------
    dict
        fw_id → exit code of its helper.
    """
    env = {
        **os.environ,
        **{f"ALFLOW_{k.upper()}": str(v) for k, v in settings.model_dump().items()},
        "ALFLOW_STORE": store_path,
        "OMP_NUM_THREADS": str(settings.torch_threads),
    }
    pending = list(jobs)
    running: dict[int, subprocess.Popen[bytes]] = {}
    codes: dict[int, int] = {}
    started = time.perf_counter()
    while pending or running:
        while pending and len(running) < settings.parallel_processes:
            fw_id, directory = pending.pop(0)
            directory.mkdir(parents=True, exist_ok=True)
            with open(directory / "prefetch.log", "ab") as log_file:
                running[fw_id] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "alflow.workflow.prefetch",
                        store_path,
                        str(fw_id),
                        str(directory),
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=_die_with_parent,
                )
        time.sleep(0.2)
        for fw_id, process in list(running.items()):
            if process.poll() is not None:
                codes[fw_id] = process.returncode
                del running[fw_id]
    log.info(
        "computed %d Fireworks side by side (%d at a time) in %.1f s",
        len(codes),
        settings.parallel_processes,
        time.perf_counter() - started,
    )
    return codes


def _die_with_parent() -> None:
    """Linux: the helper gets SIGKILL when the runner dies (no orphan keeps writing)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_one(store_path: str, fw_id: int, directory: Path) -> None:
    from alflow.config import CampaignConfig
    from alflow.settings import load_settings
    from alflow.steps.context import StepContext
    from alflow.steps.explore import explore_walker
    from alflow.steps.train import train_committee_member
    from alflow.store import Store
    from alflow.store.embedded import EmbeddedServer

    server = EmbeddedServer(store_path, writable=False)  # a private snapshot: never saved
    settings = load_settings()
    fw = server.client[settings.launchpad_name]["fireworks"].find_one({"fw_id": fw_id})
    if fw is None:
        raise SystemExit(f"no Firework {fw_id} in {store_path}")
    spec = fw["spec"]
    ctx = StepContext(
        store=Store(server.client[settings.store_name]),
        config=CampaignConfig.model_validate(spec["config"]),
        settings=settings,
        workdir=directory,
    )
    os.chdir(directory)
    if spec["step"] == "train":
        train_committee_member(ctx, spec["iteration"], spec["member"])
    elif spec["step"] == "explore":
        explore_walker(ctx, spec["iteration"], spec["walker"])
    else:
        raise SystemExit(f"step {spec['step']!r} is not computed ahead")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the helper process."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m alflow.workflow.prefetch STORE FW_ID LAUNCH_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _run_one(args[0], int(args[1]), Path(args[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
