"""GPAW label Fireworks through a real one-node Slurm, FireWorks' offline mode, the test server.

The module's set-up starts Slurm on localhost (:mod:`slurm_cluster`). A
labeling workflow of a campaign (label Fireworks + collect, built by
:func:`alflow.workflow.builder.labeling_workflow`) sits on a LaunchPad
of the test server; :class:`~alflow.workflow.dispatch.OfflineDispatcher` submits label
Fireworks as Slurm jobs that run ``rlaunch --offline singleshot``, and
ingests their results into the store and the LaunchPad. The last test runs
the runner itself (``run_campaign(..., dft_queue=...)``).

Faults are injected by the test job module ``tests/gpaw_faults.py`` (the
bench's ``gpaw_job_module``) through ``ALFLOW_TEST_GPAW_FAULT``, which
``sbatch`` passes into the job's environment with ``PYTHONPATH`` (``--export=ALL``
is Slurm's default).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from gpaw_faults import MODULE, fault_settings, set_fault
from slurm_cluster import slurm_cluster, wait_for_job_state  # noqa: F401

from alflow.config import CampaignConfig
from alflow.settings import Settings
from alflow.structures import structure_key

pytestmark = [pytest.mark.gpaw, pytest.mark.slurm, pytest.mark.slow]

ORACLE = {
    "code": "gpaw",
    "mode": "pw",
    "ecut_eV": 200,
    "xc": "PBE",
    "kpts": [2, 2, 2],
    "smearing_width_eV": 0.1,
    "max_retries": 0,
}


def campaign(name: str, a_A: float = 4.05) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": name,
            "initial": {
                "structures": [
                    {
                        "kind": "bulk",
                        "symbol": "Al",
                        "crystalstructure": "fcc",
                        "a_A": a_A,
                        "cubic": True,
                    }
                ],
                "n_rattled": 1,
                "n_holdout": 0,
                "rattle_stdev_A": 0.05,
                "strain_max": 0.0,
                # the dispatch of seed labels is what is tested: no short-range frames
                "short_range": {"dimer_distance_factors": [], "squeeze_factors": []},
            },
            "committee": {"members": 2},
            "exploration": {"walkers": 1, "temperatures_K": [300], "steps": 10},
            "selection": {"max_per_iteration": 4, "sanity": {"min_distance_A": 1.8}},
            "labeling": {
                "oracle": ORACLE,
                "queue": {"nodes": 1, "cores": 2, "walltime_min": 5},
            },
            "loop": {"max_iterations": 1, "max_dft_labels": 10},
        }
    )


def rattled(seed: int) -> Atoms:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


class Bench:
    """A store + LaunchPad on the test server holding one labeling workflow, and a dispatcher."""

    def __init__(self, work: Path, settings: Settings) -> None:
        from fireworks import FWorker

        from alflow.store import open_store
        from alflow.workflow.builder import CATEGORIES, labeling_workflow
        from alflow.workflow.dispatch import OfflineDispatcher, QueueOptions
        from alflow.workflow.launchpad import open_launchpad

        self.work = work
        self.config = campaign("slurm-faults")
        self.settings = settings.model_copy(update={"mpi_ranks": 2})
        self.connection, self.store = open_store(
            self.settings.store, db_name=self.settings.store_name
        )
        self.launchpad = open_launchpad(self.connection, self.settings.launchpad_name)
        self.store.register_campaign(self.config)
        overlap = rattled(5)
        overlap.positions[1] = overlap.positions[0] + [0.5, 0.0, 0.0]
        self.frames = {
            "happy": rattled(1),
            "cancel": rattled(2),
            "scf": rattled(3),
            "kill": rattled(4),
            "overlap": overlap,
        }
        self.keys = {name: structure_key(atoms) for name, atoms in self.frames.items()}
        keys = list(self.keys.values())
        self.store.add_structures(
            self.config.name,
            list(self.frames.values()),
            keys,
            iteration=1,
            status="selected",
            origins=[{"kind": "test", "index": i} for i in range(len(keys))],
        )
        self.launchpad.add_wf(labeling_workflow(self.config, 1, keys))
        self.fworker = FWorker(
            name="alflow-embedded",
            category=list(CATEGORIES),
            query={"spec.campaign": self.config.name},
            env=self.settings.model_dump(),
        )
        self.dispatcher = OfflineDispatcher(
            self.launchpad,
            self.store,
            self.settings,
            self.fworker,
            QueueOptions(poll_s=0.5, max_reruns=1),
        )

    def fw_id(self, name: str) -> int:
        doc = self.launchpad.fireworks.find_one({"spec.structure_key": self.keys[name]})
        return int(doc["fw_id"])

    def directory(self, name: str) -> Path:
        return self.work / "scratch" / f"fw{self.fw_id(name):05d}"

    def state(self, name: str) -> str:
        return str(self.launchpad.fireworks.find_one({"fw_id": self.fw_id(name)})["state"])

    def wait(self, timeout_s: float = 180.0) -> list[tuple[int, str]]:
        """Poll until no job is in flight; return what each poll reported."""
        events: list[tuple[int, str]] = []
        deadline = time.monotonic() + timeout_s
        while self.dispatcher.in_flight:
            assert time.monotonic() < deadline, f"jobs still in flight: {self.dispatcher.jobs}"
            events += self.dispatcher.poll()
            time.sleep(0.5)
        return events

    def labels(self, name: str) -> list[dict[str, Any]]:
        return list(self.store.labels.find({"structure_key": self.keys[name]}))

    def structure(self, name: str) -> dict[str, Any]:
        return self.store.structure(self.config.name, self.keys[name])


@pytest.fixture(scope="module")
def bench(
    slurm_cluster: Any,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    mongo_uri: str,
) -> Iterator[Bench]:
    work = tmp_path_factory.mktemp("slurm-offline")
    tag = uuid.uuid4().hex[:10]
    with pytest.MonkeyPatch.context() as patch:  # PYTHONPATH for the jobs' gpaw_faults
        settings = fault_settings(
            patch,
            None,  # the production job unless a test sets a fault
            store=mongo_uri,
            scratch_dir=str(work / "scratch"),
            store_name=f"alflow_{tag}",
            launchpad_name=f"fw_{tag}",
        )
        assert settings.gpaw_job_module == MODULE
        yield Bench(work, settings)


def test_label_firework_runs_as_slurm_job_and_matches_in_process(bench: Bench) -> None:
    from alflow.labeling.gpaw_labeler import GPAWLabeler

    fw_id = bench.fw_id("happy")
    assert bench.dispatcher.accepts(fw_id)
    job = bench.dispatcher.submit(fw_id, bench.directory("happy"))
    assert bench.state("happy") == "RESERVED"
    script = (job.directory / "FW_submit.script").read_text()
    assert "#SBATCH --ntasks=2" in script and "#SBATCH --time=00:05:00" in script
    assert "singleshot --offline" in script
    # a runner started again (after a kill) adopts the job still in the queue
    from alflow.workflow.dispatch import OfflineDispatcher

    again = OfflineDispatcher(bench.launchpad, bench.store, bench.settings, bench.fworker)
    assert again.adopt_running(bench.config.name) == 1
    assert [j.job_id for j in again.jobs.values()] == [job.job_id]
    assert bench.wait() == [(fw_id, "COMPLETED")]

    (label,) = bench.labels("happy")
    assert label["ok"] and label["cores"] == 2 and label["batch_job"] == job.job_id
    assert label["parameters_effective_hash"] is None
    assert bench.structure("happy")["status"] == "labeled"
    offline = json.loads((job.directory / "FW_offline.json").read_text())
    assert offline["state"] == "COMPLETED"
    launch = bench.launchpad.launches.find_one({"launch_id": job.launch_id})
    assert launch["action"]["stored_data"]["energy_eV"] == pytest.approx(label["energy_eV"])

    labeler = GPAWLabeler(bench.config.labeling.oracle, Settings())
    direct = labeler.label(bench.frames["happy"], bench.work / "direct")
    assert label["energy_eV"] == pytest.approx(direct.energy_eV, abs=1e-4)
    np.testing.assert_allclose(label["forces_eV_A"], direct.forces_eV_A, atol=1e-3)

    # ingesting the same job's result again stores nothing new
    from alflow.steps.label import record_label_outcome

    outcome = json.loads((job.directory / "offline_label.json").read_text())
    record_label_outcome(bench.store, bench.config.name, 1, bench.keys["happy"], outcome)
    assert len(bench.labels("happy")) == 1


def test_cancelled_job_is_rerun_and_labeled_once(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    fw_id = bench.fw_id("cancel")
    set_fault(monkeypatch, "hang")  # the job's GPAW waits as if it were slow
    job = bench.dispatcher.submit(fw_id, bench.directory("cancel"))
    set_fault(monkeypatch, None)
    wait_for_job_state(job.job_id, {"RUNNING"})
    deadline = time.monotonic() + 90
    while not (job.directory / "input.json").exists():  # GPAW's job has started
        assert time.monotonic() < deadline, "the GPAW job never started"
        time.sleep(0.5)
    assert bench.dispatcher.poll() == []  # running: nothing to do
    subprocess.run(["scancel", job.job_id], check=True)
    wait_for_job_state(job.job_id, {"GONE"}, timeout_s=60)

    assert bench.dispatcher.poll() == [(fw_id, "RERUN")]
    assert bench.state("cancel") == "READY" and not bench.labels("cancel")
    rerun = bench.dispatcher.submit(fw_id, bench.directory("cancel"))
    assert rerun.job_id != job.job_id and rerun.directory == job.directory
    assert bench.wait() == [(fw_id, "COMPLETED")]

    (label,) = bench.labels("cancel")
    assert label["ok"] and label["batch_job"] == rerun.job_id
    assert bench.structure("cancel")["status"] == "labeled"
    fw = bench.launchpad.fireworks.find_one({"fw_id": fw_id})
    assert len(fw["archived_launches"]) == 1 and len(fw["launches"]) == 1
    assert (job.directory / "FW_offline-previous.json").is_file()  # the lost run's record kept


def test_scf_failure_and_killed_gpaw_are_recorded_failures(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_fault(monkeypatch, "scf_fail_always")
    scf = bench.dispatcher.submit(bench.fw_id("scf"), bench.directory("scf"))
    set_fault(monkeypatch, "kill")
    kill = bench.dispatcher.submit(bench.fw_id("kill"), bench.directory("kill"))
    set_fault(monkeypatch, None)
    events = dict(bench.wait(timeout_s=240))
    assert events == {scf.fw_id: "FIZZLED", kill.fw_id: "FIZZLED"}

    (failed,) = bench.labels("scf")
    assert not failed["ok"] and "KohnShamConvergenceError" in failed["error"]
    assert [a["status"] for a in failed["attempts"]] == ["scf_failed"]
    assert bench.structure("scf")["status"] == "failed"
    assert "scf_failed" in bench.structure("scf")["reason"]

    (killed,) = bench.labels("kill")
    assert not killed["ok"] and "SIGKILL" in killed["error"]
    assert killed["attempts"][0]["status"] == "crashed"
    assert bench.structure("kill")["status"] == "failed"
    # every file of the failed calculation is kept for inspection
    assert (kill.directory / "gpaw-attempt0.txt").is_file()
    assert (kill.directory / "attempts.json").is_file()


def test_overlapping_atoms_are_rejected_without_a_job(bench: Bench) -> None:
    from fireworks.core.rocket_launcher import launch_rocket

    fw_id = bench.fw_id("overlap")
    assert not bench.dispatcher.accepts(fw_id)  # runs in-process, never queued
    directory = bench.directory("overlap")
    directory.mkdir(parents=True)
    previous = Path.cwd()
    try:
        os.chdir(directory)
        launch_rocket(bench.launchpad, bench.fworker, fw_id=fw_id, strm_lvl="ERROR")
    finally:
        os.chdir(previous)
    assert bench.state("overlap") == "COMPLETED"
    doc = bench.structure("overlap")
    assert doc["status"] == "rejected" and "apart" in doc["reason"]
    assert not bench.labels("overlap")
    # the collect Firework can now run: every label Firework has ended
    collect = bench.launchpad.fireworks.find_one({"spec.step": "collect"})
    assert collect["state"] == "READY"


def test_runner_sends_seed_labels_to_slurm(
    slurm_cluster: Any,  # noqa: F811
    tmp_path: Path,
    server_settings: Settings,
) -> None:
    from alflow.store import open_store
    from alflow.workflow.dispatch import QueueOptions
    from alflow.workflow.runner import run_campaign

    config = campaign("slurm-runner", a_A=4.04)
    settings = server_settings.model_copy(update={"mpi_ranks": 2})
    done: list[Any] = []
    outcome = run_campaign(
        config,
        settings,
        dft_queue=QueueOptions(poll_s=0.5),
        max_fireworks=3,  # the two seed labels (Slurm) and the E0s (in-process)
        progress=done.append,
    )
    assert outcome.fireworks_run == 3
    assert sorted(d.step for d in done) == ["label", "label", "references"]
    _, store = open_store(settings.store, db_name=settings.store_name)
    labels = list(store.labels.find({"campaign": "slurm-runner"}))
    assert len(labels) == 2 and all(d["ok"] and d["batch_job"] for d in labels)
    statuses = {d["status"] for d in store.structures.find({"campaign": "slurm-runner"})}
    assert statuses == {"seed"}
    # the E0s ran in the runner, on the campaign's store (no stray store in a launch directory)
    assert store.references.count_documents({}) == 1
    assert not list(Path(settings.scratch_dir).rglob("alflow-store"))
