"""The runner's side of offline mode: submit label Fireworks as batch jobs, ingest their results.

:class:`OfflineDispatcher` reserves a Firework, writes its offline launch
into the launch directory, renders and submits the queue script, and later
records the job's label and applies its FWAction; the job's side is
:mod:`alflow.workflow.offline` (read its docstring for the whole protocol).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fireworks import FWAction

from alflow.cluster.scheduler import job_state
from alflow.config import CampaignConfig
from alflow.errors import AlflowError
from alflow.labeling import make_labeler, sanity_reason
from alflow.settings import Settings
from alflow.steps.label import done_status_for, failure_document, record_label_outcome
from alflow.structures import atoms_from_doc
from alflow.templates import queue_template
from alflow.workcache import write_json_atomically
from alflow.workflow.offline import (
    JOB_RECORD_NAME,
    OFFLINE_RESULT_NAME,
    OFFLINE_SPEC_KEY,
    SCRIPT_NAME,
    WORKER_NAME,
    OfflineLabelTask,
)

__all__ = ["OfflineDispatcher", "OfflineJob", "QueueOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueOptions:
    """How dft Fireworks are sent to the batch system.

    Attributes
    ----------
    scheduler
        ``slurm`` or ``pbs`` (selects the template and the status command).
    qadapter_file
        A FireWorks queue-adapter YAML (``CommonAdapter``); None: the
        template in ``alflow/templates/`` for the scheduler.
    queue_params
        Extra adapter keys for every job (``queue``/partition, ``account``,
        ``pre_rocket`` such as ``module load gpaw``).
    poll_s
        Seconds between looks at the queue while only jobs are left.
    max_reruns
        A job that vanishes without a result (walltime, node failure,
        ``scancel``) is re-run this many times; then its label is recorded
        as failed.
    python
        Interpreter of the jobs.
    """

    scheduler: Literal["slurm", "pbs"] = "slurm"
    qadapter_file: Path | None = None
    queue_params: dict[str, Any] = field(default_factory=dict)
    poll_s: float = 5.0
    max_reruns: int = 2
    python: str = sys.executable


@dataclass
class OfflineJob:
    """One submitted Firework.

    Attributes
    ----------
    fw_id, launch_id
        The Firework and its offline launch.
    job_id
        The batch system's job id.
    directory
        The launch directory.
    submitted
        ``time.time()`` at submission.
    """

    fw_id: int
    launch_id: int
    job_id: str
    directory: Path
    submitted: float


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class OfflineDispatcher:
    """Send a campaign's label Fireworks to a batch queue and ingest what comes back.

    Parameters
    ----------
    launchpad
        The campaign's LaunchPad.
    store
        The alflow store (same server).
    settings
        The runner's settings; the jobs' worker settings are these (MPI
        launcher and ranks: set ``ALFLOW_MPI_COMMAND=srun`` where the site
        wants it).
    fworker
        The runner's FWorker (its query and categories bound what is reserved).
    options
        Scheduler, template, polling, reruns.
    """

    def __init__(
        self,
        launchpad: Any,
        store: Any,
        settings: Settings,
        fworker: Any,
        options: QueueOptions | None = None,
    ) -> None:
        self.launchpad = launchpad
        self.store = store
        self.settings = settings
        self.fworker = fworker
        self.options = options or QueueOptions()
        self.jobs: dict[int, OfflineJob] = {}
        #: fw_id → submission time (``time.time()``) of its last ingested job.
        self.submitted_at: dict[int, float] = {}

    # ------------------------------------------------------------------ queries

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet ingested."""
        return len(self.jobs)

    def accepts(self, fw_id: int) -> bool:
        """True for a label Firework whose structure needs a real calculation.

        Reused labels, sanity rejections and structures rejected after
        selection are quick and write the store: they run in-process with
        the ordinary LabelTask.
        """
        fw = self.launchpad.fireworks.find_one({"fw_id": fw_id}, {"spec": 1})
        spec = (fw or {}).get("spec", {})
        if spec.get("_category") != "dft" or spec.get("step") != "label":
            return False
        if "structure_key" not in spec:
            return False
        config = CampaignConfig.model_validate(spec["config"])
        key = spec["structure_key"]
        labeler = make_labeler(config.labeling.oracle, self.settings)
        existing = self.store.label(key, labeler.parameters_hash())
        if existing is not None and existing.get("ok"):
            return False
        doc = self.store.structure(config.name, key)
        if doc["status"] == "rejected":  # dropped after selection: the label step skips it
            return False
        return sanity_reason(atoms_from_doc(doc["atoms"]), config.selection.sanity) is None

    # ------------------------------------------------------------------ submit

    def _qadapter(self, fw: Any, directory: Path) -> Any:
        from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
        from fireworks.utilities.fw_serializers import load_object

        options = self.options
        if options.qadapter_file is not None:
            from fireworks.utilities.fw_serializers import load_object_from_file

            adapter = load_object_from_file(str(options.qadapter_file))
        else:
            q_type = {"slurm": "SLURM", "pbs": "PBS"}[options.scheduler]
            template = queue_template(options.scheduler)
            adapter = CommonAdapter(q_type, template_file=str(template), logdir=str(directory))
        adapter = load_object(adapter.to_dict())  # a copy: per-Firework updates stay local
        adapter.setdefault("omp_threads", 1)
        adapter.update(options.queue_params)
        adapter.update({"job_name": _job_name(fw.name)})
        adapter.update(fw.spec.get("_queueadapter", {}))
        adapter["logdir"] = str(directory)
        worker = directory / WORKER_NAME
        adapter["rocket_launch"] = shlex.join(
            [
                options.python,
                "-m",
                "alflow.workflow.offline",
                "rlaunch",
                "-w",
                str(worker),
                "singleshot",
                "--offline",
                "--fw_id",
                str(fw.fw_id),
            ]
        )
        return adapter

    def _offline_firework(self, fw: Any, key: str, campaign: str) -> Any:
        from fireworks import Firework

        doc = self.store.structure(campaign, key)
        copy = Firework.from_dict(fw.to_dict())
        copy.tasks = [OfflineLabelTask()]
        copy.spec[OFFLINE_SPEC_KEY] = {
            "atoms": doc["atoms"],
            "done_status": done_status_for(doc["status"]),
        }
        return copy

    def submit(self, fw_id: int, directory: Path) -> OfflineJob:
        """Reserve Firework ``fw_id``, write its job into ``directory`` and submit it.

        Raises
        ------
        AlflowError
            The submission failed (the reservation is cancelled first, so the
            Firework is READY again).
        """
        import yaml

        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        fw, launch_id = self.launchpad.reserve_fw(self.fworker, str(directory), fw_id=fw_id)
        if fw is None:
            raise AlflowError(f"Firework {fw_id} could not be reserved (not READY?)")
        try:
            offline_fw = self._offline_firework(fw, fw.spec["structure_key"], fw.spec["campaign"])
            for stale in (OFFLINE_RESULT_NAME, "FW_offline.json", "FW_action.json"):
                path = directory / stale
                if path.exists():
                    path.replace(directory / f"{path.stem}-previous{path.suffix}")
            worker_env = self.settings.model_dump()
            worker_env["store"] = "(offline job: no store)"
            (directory / WORKER_NAME).write_text(
                yaml.safe_dump(
                    {
                        "name": "alflow-offline",
                        "category": ["dft"],
                        "query": "{}",
                        "env": worker_env,
                    }
                )
            )
            with _cwd(directory):
                offline_fw.to_file("FW.json")
                Path("FW_offline.json").write_text(json.dumps({"launch_id": launch_id}))
                self.launchpad.add_offline_run(launch_id, fw.fw_id, fw.name)
                adapter = self._qadapter(fw, directory)
                Path(SCRIPT_NAME).write_text(adapter.get_script_str(str(directory)))
                job_id = adapter.submit_to_queue(SCRIPT_NAME)
            if not job_id:
                raise AlflowError(
                    f"{self.options.scheduler}: submitting {directory / SCRIPT_NAME} failed "
                    f"(see {directory}/FW_qadapter*.log or the scheduler's message)"
                )
        except BaseException:
            self.launchpad.cancel_reservation(launch_id)
            self.launchpad.forget_offline(launch_id)
            raise
        self.launchpad.set_reservation_id(launch_id, str(job_id))
        job = OfflineJob(fw.fw_id, launch_id, str(job_id), directory, time.time())
        write_json_atomically(
            directory / JOB_RECORD_NAME, job.__dict__ | {"directory": str(directory)}
        )
        self.jobs[launch_id] = job
        log.info("%s: submitted as %s job %s", fw.name, self.options.scheduler, job_id)
        return job

    # ------------------------------------------------------------------ resume

    def adopt_running(self, campaign: str) -> int:
        """Track offline jobs of ``campaign`` submitted by an earlier (killed) runner.

        Returns
        -------
        int
            Jobs adopted.
        """
        adopted = 0
        for run in self.launchpad.offline_runs.find({"completed": False, "deprecated": False}):
            if run["launch_id"] in self.jobs:
                continue
            fw = self.launchpad.fireworks.find_one(
                {"fw_id": run["fw_id"], "spec.campaign": campaign}, {"state": 1}
            )
            if fw is None or fw["state"] not in ("RESERVED", "RUNNING"):
                continue
            launch = self.launchpad.launches.find_one({"launch_id": run["launch_id"]})
            job_ids = [
                h["reservation_id"]
                for h in launch.get("state_history", [])
                if h.get("reservation_id")
            ]
            job_id = str(job_ids[-1]) if job_ids else ""
            self.jobs[run["launch_id"]] = OfflineJob(
                run["fw_id"], run["launch_id"], job_id, Path(launch["launch_dir"]), time.time()
            )
            adopted += 1
            log.info("adopted offline Firework %d (job %s)", run["fw_id"], job_id or "unknown")
        return adopted

    # ------------------------------------------------------------------ poll

    def poll(self) -> list[tuple[int, str]]:
        """Ingest finished jobs; re-run lost ones.

        Returns
        -------
        list of (fw_id, what)
            ``what`` is the Firework's state after ingestion (COMPLETED,
            FIZZLED) or ``RERUN`` for a lost job sent back to READY.
        """
        finished: list[tuple[int, str]] = []
        for job in list(self.jobs.values()):
            if _has_action(job.directory):
                finished.append((job.fw_id, self._ingest(job)))
                continue
            state = job_state(self.options.scheduler, job.job_id) if job.job_id else None
            if state == "unknown" or (state is not None and state != "gone"):
                continue  # queued, running, or the scheduler did not answer: wait
            if _has_action(job.directory):  # it finished between the two looks
                finished.append((job.fw_id, self._ingest(job)))
                continue
            finished.append((job.fw_id, self._lost(job)))
        return finished

    def _ingest(self, job: OfflineJob) -> str:
        fw = self.launchpad.get_fw_by_id(job.fw_id)
        spec = fw.spec
        outcome = _read_json(job.directory / OFFLINE_RESULT_NAME)
        if outcome is None:
            offline = _read_json(job.directory / "FW_offline.json") or {}
            stored = offline.get("fwaction", {}).get("stored_data", {})
            error = (stored.get("_exception") or {}).get("_stacktrace") or "no offline_label.json"
            outcome = self._failure_outcome(spec, job, f"offline job failed: {error[-400:]}")
        record_label_outcome(
            self.store, spec["campaign"], spec["iteration"], spec["structure_key"], outcome
        )
        self.launchpad.recover_offline(job.launch_id, ignore_errors=False, print_errors=True)
        del self.jobs[job.launch_id]
        self.submitted_at[job.fw_id] = job.submitted
        state = self.launchpad.fireworks.find_one({"fw_id": job.fw_id}, {"state": 1})["state"]
        log.info("%s: job %s ingested: %s", fw.name, job.job_id, state)
        return str(state)

    def _failure_outcome(self, spec: dict[str, Any], job: OfflineJob, error: str) -> dict:
        config = CampaignConfig.model_validate(spec["config"])
        attempts = _read_json(job.directory / "attempts.json")
        failure = failure_document(
            make_labeler(config.labeling.oracle, self.settings),
            self.settings,
            error=error,
            attempts=attempts if isinstance(attempts, list) else [],
            host="",
            provenance={"workdir": str(job.directory), "batch_job": job.job_id},
        )
        return {"key": spec["structure_key"], "status": "failed", "failure": failure}

    def _lost(self, job: OfflineJob) -> str:
        """A job left the queue without a result: re-run it, or record the failure."""
        fw_doc = self.launchpad.fireworks.find_one(
            {"fw_id": job.fw_id}, {"launches": 1, "archived_launches": 1, "name": 1, "spec": 1}
        )
        runs = len(fw_doc.get("launches", [])) + len(fw_doc.get("archived_launches", []))
        del self.jobs[job.launch_id]
        self.launchpad.forget_offline(job.launch_id)
        if runs <= self.options.max_reruns:
            log.warning(
                "%s: job %s left the queue without a result (walltime, node failure or "
                "scancel): re-running (%d/%d) in %s",
                fw_doc["name"],
                job.job_id,
                runs,
                self.options.max_reruns,
                job.directory,
            )
            self.launchpad.rerun_fw(job.fw_id)
            return "RERUN"
        error = f"batch job lost {runs} times (last: {job.job_id}); giving up"
        spec = fw_doc["spec"]
        outcome = self._failure_outcome(spec, job, error)
        record_label_outcome(
            self.store, spec["campaign"], spec["iteration"], spec["structure_key"], outcome
        )
        action = FWAction(
            stored_data={"_message": error, "_task": None, "_exception": {"_stacktrace": error}},
            exit=True,
        )
        self.launchpad.complete_launch(job.launch_id, action, "FIZZLED")
        log.error("%s: %s", fw_doc["name"], error)
        return "FIZZLED"


def _job_name(name: str) -> str:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return slug[:60]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _has_action(directory: Path) -> bool:
    data = _read_json(directory / "FW_offline.json")
    return isinstance(data, dict) and "fwaction" in data
