"""The FireWorks files a cluster user needs: launchpad, one worker per category, queue adapters.

:func:`write_cluster_files` writes into one directory:

- ``my_launchpad.yaml``: the LaunchPad on the MongoDB server (URI mode);
- ``my_fworker_<category>.yaml`` for train, md (GPU nodes: ``device: cuda``),
  dft (CPU nodes: the MPI launcher and ranks of one GPAW job) and service
  (the login node): each names its ``category`` (a worker without one would
  run every Firework, GPU ones included) and carries the alflow settings in
  ``env`` (read by the Firetasks through ``_fw_env``);
- ``my_qadapter_<category>.yaml`` for train, md and dft: FireWorks'
  ``CommonAdapter`` for Slurm or PBS with ``rlaunch ... singleshot`` as the
  rocket (reservation mode, so each dft Firework's ``_queueadapter`` nodes,
  ntasks and walltime are used: ``qlaunch -r``);
- the queue-script template the adapters name (``_fw_template_file``).

Nothing is overwritten unless asked.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from alflow.errors import ConfigError
from alflow.store import is_mongodb_uri, mask_uri
from alflow.templates import queue_template

__all__ = ["ClusterOptions", "write_cluster_files"]

log = logging.getLogger(__name__)

_Q_TYPE = {"slurm": "SLURM", "pbs": "PBS"}


@dataclass(frozen=True)
class ClusterOptions:
    """What :func:`write_cluster_files` writes.

    Attributes
    ----------
    store
        ``mongodb://`` URI of the server (alflow data and LaunchPad).
    out_dir
        Where the files go.
    scheduler
        ``slurm`` or ``pbs``.
    campaign
        Restrict the workers to one campaign (``spec.campaign``); None: all.
    dft_ranks
        MPI ranks of one GPAW job (the dft worker's ``mpi_ranks``).
    dft_mpi_command
        Launcher of GPAW jobs (``srun`` under Slurm, ``mpiexec`` under PBS by default).
    dft_walltime
        Default walltime of a dft job (``HH:MM:SS``); each Firework's
        ``_queueadapter`` replaces it under ``qlaunch -r``.
    gpu_walltime
        Walltime of a train/md job.
    queue, gpu_queue, account
        Partition/queue names and account (None: the site default).
    python
        Interpreter on the nodes (for ``rlaunch``).
    scratch_dir
        Work directories of every worker (``scratch_dir`` in its ``env``): a
        file system all nodes share, so a re-run job finds earlier results.
    launchpad_name, store_name
        Database names.
    overwrite
        Replace existing files.
    """

    store: str
    out_dir: Path
    scheduler: Literal["slurm", "pbs"] = "slurm"
    campaign: str | None = None
    dft_ranks: int = 2
    dft_mpi_command: str | None = None
    dft_walltime: str = "01:00:00"
    gpu_walltime: str = "04:00:00"
    queue: str | None = None
    gpu_queue: str | None = None
    account: str | None = None
    python: str = sys.executable
    scratch_dir: str = "alflow-scratch"
    launchpad_name: str = "fireworks"
    store_name: str = "alflow"
    overwrite: bool = False


def _dump(path: Path, data: dict[str, Any], header: str, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists (pass --force to replace it)")
    path.write_text(f"# {header}\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def _env(options: ClusterOptions, **extra: Any) -> dict[str, Any]:
    return {
        "store": options.store,
        "store_name": options.store_name,
        "launchpad_name": options.launchpad_name,
        "scratch_dir": options.scratch_dir,
        **extra,
    }


def _launchpad_file(options: ClusterOptions, out: Path) -> Path:
    """``my_launchpad.yaml``: FireWorks' URI-mode LaunchPad on the server."""
    return _dump(
        out / "my_launchpad.yaml",
        {
            "host": options.store,
            "name": options.launchpad_name,
            "uri_mode": True,
            "logdir": None,
            "strm_lvl": "INFO",
        },
        f"alflow LaunchPad on {mask_uri(options.store)} (FireWorks URI mode)",
        options.overwrite,
    )


def _worker_files(options: ClusterOptions, out: Path) -> list[Path]:
    """``my_fworker_<category>.yaml``: one FireWorker per category, its settings as env."""
    query = {"spec.campaign": options.campaign} if options.campaign else {}
    mpi_command = options.dft_mpi_command or ("srun" if options.scheduler == "slurm" else "mpiexec")
    workers = {
        "train": _env(options, device="cuda", torch_threads=4, parallel_processes=1),
        "md": _env(options, device="cuda", torch_threads=4, parallel_processes=1),
        "dft": _env(options, device="cpu", mpi_command=mpi_command, mpi_ranks=options.dft_ranks),
        "service": _env(options, device="cpu", torch_threads=1),
    }
    where = {
        "train": "GPU nodes",
        "md": "GPU nodes",
        "dft": "CPU nodes",
        "service": "the login node (rlaunch rapidfire)",
    }
    return [
        _dump(
            out / f"my_fworker_{category}.yaml",
            {
                "name": f"alflow-{category}",
                "category": [category],
                "query": json.dumps(query),  # FireWorks reads a JSON string
                "env": env,
            },
            f"FireWorker for '{category}' Fireworks on {where[category]}",
            options.overwrite,
        )
        for category, env in workers.items()
    ]


def _queue_template_copy(options: ClusterOptions, out: Path) -> Path:
    """The packaged queue-script template, copied next to the adapters that name it."""
    template_src = queue_template(options.scheduler)
    template = out / template_src.name
    if template.exists() and not options.overwrite:
        raise ConfigError(f"{template} exists (pass --force to replace it)")
    shutil.copyfile(template_src, template)
    return template


def _queue_adapter(options: ClusterOptions, out: Path, category: str, template: Path) -> dict:
    """FireWorks ``CommonAdapter`` settings of one job category (dft: CPU; train/md: GPU)."""
    rocket = shlex.join(
        [
            options.python,
            "-m",
            "fireworks.scripts.rlaunch_run",
            "-l",
            str(out / "my_launchpad.yaml"),
            "-w",
            str(out / f"my_fworker_{category}.yaml"),
            "singleshot",
        ]
    )
    adapter: dict[str, Any] = {
        "_fw_name": "CommonAdapter",
        "_fw_q_type": _Q_TYPE[options.scheduler],
        "_fw_template_file": str(template),
        "rocket_launch": rocket,
        "job_name": f"alflow-{category}",
        "nodes": 1,
        "omp_threads": 1,
        "logdir": str(out / "logs"),
        "pre_rocket": "# module load ... / source venv/bin/activate",
        "post_rocket": None,
    }
    if category == "dft":
        adapter.update(ntasks=options.dft_ranks, walltime=options.dft_walltime)
        if options.queue:
            adapter["queue"] = options.queue
    else:
        adapter.update(ntasks=1, walltime=options.gpu_walltime, omp_threads=4)
        if options.scheduler == "slurm":
            adapter.update(cpus_per_task=4, gres="gpu:1")
        else:
            adapter.update(ngpus=1)
        if options.gpu_queue:
            adapter["queue"] = options.gpu_queue
    if options.account:
        adapter["account"] = options.account
    return {k: v for k, v in adapter.items() if v is not None}


def write_cluster_files(options: ClusterOptions) -> list[Path]:
    """Write the launchpad, worker and queue-adapter files.

    Parameters
    ----------
    options
        Server, scheduler, resources.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ConfigError
        Not a MongoDB URI, unknown scheduler, or a file exists (without overwrite).
    """
    if not is_mongodb_uri(options.store):
        raise ConfigError(
            f"init-cluster needs a MongoDB server (mongodb://...), got {options.store!r}; "
            "without one, use `alflow run-offline` (local server, dft jobs through the queue)"
        )
    if options.scheduler not in _Q_TYPE:
        raise ConfigError(f"unknown scheduler {options.scheduler!r} (slurm or pbs)")
    out = Path(options.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written = [_launchpad_file(options, out), *_worker_files(options, out)]
    template = _queue_template_copy(options, out)
    written.append(template)
    for category in ("dft", "train", "md"):
        written.append(
            _dump(
                out / f"my_qadapter_{category}.yaml",
                _queue_adapter(options, out, category, template),
                f"{options.scheduler} queue adapter for '{category}' jobs; use with qlaunch -r "
                "(reservation mode: per-Firework _queueadapter resources apply)",
                options.overwrite,
            )
        )
    (out / "logs").mkdir(exist_ok=True)
    log.info("wrote %d files into %s", len(written), out)
    return written
