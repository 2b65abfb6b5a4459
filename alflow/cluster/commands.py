"""CLI subcommands of alflow.cluster (registered by alflow.cli).

- ``alflow init-cluster``: FireWorks launchpad/worker/queue-adapter files.
- ``alflow run-offline``: the local runner, with label Fireworks sent to
  Slurm or PBS through FireWorks' offline mode.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from alflow.cluster.init import ClusterOptions, write_cluster_files
from alflow.config import load_campaign
from alflow.settings import load_settings

# alflow.workflow.dispatch and .runner are imported when run-offline runs: they
# pull in fireworks, and this module is imported by every ``alflow`` command.

__all__ = ["register"]

log = logging.getLogger(__name__)


def _cmd_init_cluster(args: argparse.Namespace) -> int:
    campaign = None
    dft_ranks = args.dft_ranks
    walltime = "01:00:00"
    if args.campaign:
        config = load_campaign(args.campaign)
        campaign = config.name
        queue = config.labeling.queue
        dft_ranks = dft_ranks or queue.cores
        hours, minutes = divmod(queue.walltime_min, 60)
        walltime = f"{hours:02d}:{minutes:02d}:00"
    options = ClusterOptions(
        store=args.store,
        out_dir=Path(args.out),
        scheduler=args.scheduler,
        campaign=campaign,
        dft_ranks=dft_ranks or 2,
        dft_mpi_command=args.mpi_command,
        dft_walltime=walltime,
        queue=args.queue,
        gpu_queue=args.gpu_queue,
        account=args.account,
        scratch_dir=str(Path(args.scratch_dir or Path(args.out) / "scratch").resolve()),
        overwrite=args.force,
    )
    written = write_cluster_files(options)
    out = Path(args.out).resolve()
    lines = [f"wrote {len(written)} files into {out}:"]
    lines += [f"  {p.name}" for p in written]
    lines += [
        "next (see docs/hpc.md):",
        f"  alflow submit CAMPAIGN.yaml --store {args.store}",
        f"  qlaunch -l {out}/my_launchpad.yaml -w {out}/my_fworker_dft.yaml "
        f"-q {out}/my_qadapter_dft.yaml -r rapidfire --nlaunches infinite --sleep 60",
        f"  rlaunch -l {out}/my_launchpad.yaml -w {out}/my_fworker_service.yaml "
        "rapidfire --nlaunches infinite --sleep 30",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _cmd_run_offline(args: argparse.Namespace) -> int:
    from alflow.workflow.dispatch import QueueOptions
    from alflow.workflow.runner import run_campaign

    config = load_campaign(args.campaign)
    settings = load_settings(overrides={"store": args.store})
    params = {}
    if args.queue:
        params["queue"] = args.queue
    if args.account:
        params["account"] = args.account
    if args.pre_rocket:
        params["pre_rocket"] = args.pre_rocket
    options = QueueOptions(
        scheduler=args.scheduler,
        qadapter_file=Path(args.qadapter) if args.qadapter else None,
        queue_params=params,
        poll_s=args.poll_s,
        max_reruns=args.max_reruns,
    )
    started = time.perf_counter()

    def progress(done: object) -> None:
        log.info(
            "[%6.0f s] iteration %d %-10s %3d/%-3d %-9s %s",
            time.perf_counter() - started,
            done.iteration,  # type: ignore[attr-defined]
            done.step,  # type: ignore[attr-defined]
            done.step_done,  # type: ignore[attr-defined]
            done.step_total,  # type: ignore[attr-defined]
            done.state,  # type: ignore[attr-defined]
            done.name,  # type: ignore[attr-defined]
        )

    outcome = run_campaign(
        config,
        settings,
        retry_fizzled=args.retry_fizzled,
        progress=progress,
        dft_queue=options,
    )
    log.info("campaign '%s' %s: %s", config.name, outcome.status, outcome.reason)
    return 0 if outcome.status in ("converged", "stopped") else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `alflow` parser."""
    init = subparsers.add_parser(
        "init-cluster",
        help="write FireWorks launchpad, worker (train/md/dft/service) and queue-adapter files",
    )
    init.add_argument("--store", required=True, help="mongodb:// URI of the server")
    init.add_argument("--out", required=True, help="directory for the files")
    init.add_argument("--scheduler", choices=["slurm", "pbs"], default="slurm")
    init.add_argument(
        "--campaign", help="campaign YAML: restrict workers to it, take dft resources"
    )
    init.add_argument("--dft-ranks", type=int, help="MPI ranks of one GPAW job (default: campaign)")
    init.add_argument("--mpi-command", help="GPAW launcher (default: srun / mpiexec)")
    init.add_argument("--queue", help="partition/queue of dft (CPU) jobs")
    init.add_argument("--gpu-queue", help="partition/queue of train/md (GPU) jobs")
    init.add_argument("--account", help="account to charge")
    init.add_argument(
        "--scratch-dir",
        help="work directories on a file system all nodes share (default: <out>/scratch)",
    )
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.set_defaults(func=_cmd_init_cluster)

    run = subparsers.add_parser(
        "run-offline",
        help="run a campaign here (local server), sending label Fireworks to Slurm/PBS",
    )
    run.add_argument("campaign", help="campaign YAML file")
    run.add_argument(
        "--store", help="store directory or mongodb:// URI (default: ALFLOW_STORE or alflow-store)"
    )
    run.add_argument("--scheduler", choices=["slurm", "pbs"], default="slurm")
    run.add_argument(
        "--qadapter", help="FireWorks queue-adapter YAML (default: the built-in template)"
    )
    run.add_argument("--queue", help="partition/queue of the DFT jobs")
    run.add_argument("--account", help="account to charge")
    run.add_argument("--pre-rocket", help="shell lines before the job (module load, venv)")
    run.add_argument("--poll-s", type=float, default=10.0, help="seconds between queue polls")
    run.add_argument("--max-reruns", type=int, default=2, help="reruns of a lost job")
    run.add_argument("--retry-fizzled", action="store_true", help="re-run FIZZLED Fireworks first")
    run.set_defaults(func=_cmd_run_offline)
