"""dft Fireworks of a campaign as batch jobs, through FireWorks' offline mode.

A user with a login node and no MongoDB server the compute nodes can reach
runs the campaign with the local server on the login node (bound to
127.0.0.1); label Fireworks go to Slurm (or PBS) as jobs, everything else
runs in the runner's local workers. A job cannot reach the server, so it
never opens the store:

1. :meth:`OfflineDispatcher.submit` reserves the Firework
   (``launchpad.reserve_fw``), writes ``FW.json`` and ``FW_offline.json``
   into its launch directory (``launchpad.add_offline_run``), renders the
   queue script from the queue-adapter template (FireWorks' ``CommonAdapter``
   with the Firework's ``_queueadapter``), submits it and records the job id
   (``launchpad.set_reservation_id``). In ``FW.json`` the Firework's
   :class:`~alflow.workflow.tasks.LabelTask` is replaced by
   :class:`OfflineLabelTask`, and the structure is put into the spec.
2. The job runs ``python -m alflow.workflow.offline rlaunch -w worker.yaml
   singleshot --offline`` in that directory: FireWorks' own ``rlaunch`` (with
   :func:`install_zopen_shim`); :class:`OfflineLabelTask` runs the labeler
   only and writes ``offline_label.json``; the Rocket writes the FWAction
   into ``FW_offline.json``.
3. :meth:`OfflineDispatcher.poll` finds finished jobs, records their label
   in the store (:func:`record_label_outcome`) and then applies the FWAction
   with ``launchpad.recover_offline(launch_id)``. A job that left the queue
   without an FWAction (walltime, node failure, ``scancel``) is re-run in the
   same directory, where the labeler reuses a finished ``result.json``; the
   store's unique index on (structure, parameters) keeps labels single.

FireWorks 2.1 with monty ≥ 2025 cannot run offline: ``Rocket`` calls
``monty.io.zopen(path)`` without a mode, and current monty refuses an
implicit text/binary mode (``RuntimeError: Implicit text/binary mode is not
allowed``). :func:`install_zopen_shim` gives FireWorks' modules a ``zopen``
that defaults to text mode; nothing else in the process is touched.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from fireworks import FiretaskBase, FWAction, explicit_serialize

from alflow.config import CampaignConfig
from alflow.labeling import make_labeler
from alflow.steps.label import compute_label_outcome
from alflow.structures import atoms_from_doc
from alflow.workcache import write_json_atomically
from alflow.workflow.step_tasks import worker_settings

__all__ = [
    "OFFLINE_RESULT_NAME",
    "OfflineLabelTask",
    "install_zopen_shim",
    "main",
]

log = logging.getLogger(__name__)

#: What :class:`OfflineLabelTask` writes into the launch directory.
OFFLINE_RESULT_NAME = "offline_label.json"
#: The job record the dispatcher keeps in the launch directory.
JOB_RECORD_NAME = "alflow_job.json"
SCRIPT_NAME = "FW_submit.script"
WORKER_NAME = "offline_worker.yaml"
OFFLINE_SPEC_KEY = "_alflow_offline"


# --------------------------------------------------------------------------- monty shim


def install_zopen_shim() -> bool:
    """Make FireWorks' offline mode work with current monty (idempotent).

    ``fireworks.core.rocket`` calls ``zopen(path)`` without a mode; monty ≥
    2025 raises ``RuntimeError`` for that. The shim replaces the ``zopen``
    name inside FireWorks' ``rocket`` and ``firework`` modules with a wrapper
    that defaults to ``"rt"`` and passes everything else through.

    Returns
    -------
    bool
        True if the shim was installed now, False if not needed or already there.
    """
    import inspect

    import fireworks.core.firework as fw_module
    import fireworks.core.rocket as rocket_module
    from monty.io import zopen

    parameter = inspect.signature(zopen).parameters.get("mode")
    if parameter is None or parameter.default is not inspect.Parameter.empty:
        return False  # this monty still has a default mode
    installed = False
    for module in (rocket_module, fw_module):
        current = getattr(module, "zopen", None)
        if current is None or getattr(current, "_alflow_shim", False):
            continue

        def compatible_zopen(filename: Any, mode: str = "rt", *args: Any, _z=zopen, **kw: Any):
            return _z(filename, mode, *args, **kw)

        compatible_zopen._alflow_shim = True  # type: ignore[attr-defined]
        module.zopen = compatible_zopen  # type: ignore[attr-defined]
        installed = True
    if installed:
        log.debug("installed the zopen text-mode shim into FireWorks' rocket/firework modules")
    return installed


# --------------------------------------------------------------------------- recording


# --------------------------------------------------------------------------- the job's task


@explicit_serialize
class OfflineLabelTask(FiretaskBase):
    """The label step of an offline job: labeler only, result into the launch directory.

    Reads the structure and its status from ``spec["_alflow_offline"]``
    (written by the dispatcher), the worker settings from ``_fw_env``; never
    opens the store. Writes ``offline_label.json`` (see
    :func:`record_label_outcome`) and returns the same FWAction as
    :class:`~alflow.workflow.tasks.LabelTask`. A failed calculation is
    written first and then raised, so the Firework FIZZLES as it would
    in-process.
    """

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        settings = worker_settings(fw_spec)
        config = CampaignConfig.model_validate(fw_spec["config"])
        offline = fw_spec[OFFLINE_SPEC_KEY]
        key = fw_spec["structure_key"]
        workdir = Path(os.getcwd())
        outcome, error = compute_label_outcome(
            make_labeler(config.labeling.oracle, settings),
            atoms_from_doc(offline["atoms"]),
            sanity=config.selection.sanity,
            settings=settings,
            workdir=workdir,
            done_status=offline.get("done_status", "labeled"),
            provenance={"batch_job": os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")},
        )
        write_json_atomically(workdir / OFFLINE_RESULT_NAME, {"key": key, **outcome})
        if error is not None:
            raise error
        ok = outcome["status"] == "ok"
        summary = {
            "key": key,
            "reused": False,
            "status": outcome["done_status"] if ok else outcome["status"],
            "energy_eV": outcome["label"]["energy_eV"] if ok else None,
        }
        return FWAction(stored_data=summary, mod_spec=[{"_push": {"labels": summary}}])


# --------------------------------------------------------------------------- job entry


def main(argv: list[str] | None = None) -> int:
    """``python -m alflow.workflow.offline rlaunch [rlaunch arguments]``: FireWorks' rlaunch.

    With :func:`install_zopen_shim` in place, so ``rlaunch ... singleshot
    --offline`` works with current monty.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "rlaunch":
        sys.stderr.write("usage: python -m alflow.workflow.offline rlaunch [rlaunch arguments]\n")
        return 2
    install_zopen_shim()
    from fireworks.scripts.rlaunch_run import rlaunch

    rlaunch(args[1:])
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(main())
