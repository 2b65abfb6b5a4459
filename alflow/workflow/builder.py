"""Build the FireWorks of one iteration (wiring only: no computation here).

Iteration N is its own Workflow named ``<campaign> iteration N`` with
metadata ``{campaign, iteration}``::

    [iteration 0 only: references + initial labels: seed and held-out frames (dft)]
        └─► train member 0..M-1 (train) ─► walker 0..K-1 (md) ─► select (service)
            (committee.kind shared_body: train member 1..M-1 after member 0)
              select adds: label 0..L-1 (dft) ─► collect (service, allows fizzled parents)

With ``exploration.walkers_per_job`` J > 1 the md Fireworks are
ceil(K / J), each running up to J walkers batched (``walkers`` in the spec;
see :func:`walker_jobs`).

collect adds iteration N+1 as a new Workflow when the campaign goes on, and
the final fit when it ends (converged or stopped)::

    "<campaign> final fit": train member 0..M-1 on every label (train)
        └─► finalize (service) ─► validate (dft; when final.validate_after)

The two Firetasks that add Fireworks, :class:`SelectTask` and
:class:`CollectTask` (with :func:`add_iteration`), are defined here: they
build these Workflows, and these Workflows hold them. The step tasks are in
:mod:`alflow.workflow.step_tasks`; FireWorks stores all of them under
:mod:`alflow.workflow.tasks`.
"""

from __future__ import annotations

import logging
from typing import Any

from fireworks import FiretaskBase, Firework, FWAction, Workflow

from alflow.config import CampaignConfig
from alflow.steps.collect import collect_iteration
from alflow.steps.select import select_for_labeling
from alflow.store import Connection
from alflow.store.store import FINAL
from alflow.workflow.launchpad import iteration_exists, shared_launchpad
from alflow.workflow.step_tasks import (
    ExploreTask,
    FinalizeTask,
    LabelTask,
    ReferenceTask,
    TrainTask,
    ValidateTask,
    firetask,
    step_context,
    worker_settings,
    worker_store,
)

__all__ = [
    "CATEGORIES",
    "CollectTask",
    "SelectTask",
    "add_iteration",
    "crashed_labels",
    "final_workflow",
    "iteration_workflow",
    "labeling_workflow",
    "walker_jobs",
    "workflow_name",
]

log = logging.getLogger(__name__)

#: Firework categories: workers name the ones they run.
CATEGORIES = ("train", "md", "service", "dft")


def workflow_name(campaign: str, iteration: int | str) -> str:
    """The Workflow's name, as shown in the FireWorks web GUI."""
    return f"{campaign} final fit" if iteration == FINAL else f"{campaign} iteration {iteration}"


def walker_jobs(config: CampaignConfig) -> list[tuple[dict[str, Any], str]]:
    """The md Fireworks' walkers: (spec entries, name label) per Firework.

    ``exploration.walkers_per_job`` 1: one Firework per walker (``walker=w``,
    label ``w3``). J > 1: ceil(walkers / J) Fireworks, each running up to J
    walkers batched (``walkers=[...]``, label ``w0-7`` or ``w0,4,8``). With
    ``propagator: member`` the walkers are grouped by the member they
    propagate (w mod M) before they are cut into jobs, so that a job's
    walkers share members and its batched calls are as large as they can be.
    """
    exploration = config.exploration
    size = exploration.walkers_per_job
    if size == 1:
        return [({"walker": w}, f"w{w}") for w in range(exploration.walkers)]
    order = list(range(exploration.walkers))
    if exploration.propagator == "member":
        members = config.committee.members
        order.sort(key=lambda w: (w % members, w))
    jobs = []
    for first in range(0, len(order), size):
        chunk = sorted(order[first : first + size])
        if chunk == list(range(chunk[0], chunk[-1] + 1)) and len(chunk) > 1:
            label = f"w{chunk[0]}-{chunk[-1]}"
        else:
            label = "w" + ",".join(str(w) for w in chunk)
        jobs.append(({"walkers": chunk}, label))
    return jobs


def _spec(
    config: CampaignConfig, iteration: int | str, step: str, category: str, **extra: Any
) -> dict:
    return {
        "campaign": config.name,
        "iteration": iteration,
        "step": step,
        "config": config.model_dump(mode="json"),
        "_category": category,
        **extra,
    }


def _dft_spec(config: CampaignConfig, iteration: int | str, step: str, **extra: Any) -> dict:
    queue = config.labeling.queue
    hours, minutes = divmod(queue.walltime_min, 60)
    spec = _spec(config, iteration, step, "dft", **extra)
    spec["_queueadapter"] = {
        "nodes": queue.nodes,
        "ntasks": queue.cores,
        "walltime": f"{hours:02d}:{minutes:02d}:00",
        "job_name": f"alflow-{config.name}-{step}",
    }
    return spec


def _shared_body_children(config: CampaignConfig, trains: list[Any]) -> list[Any]:
    """Train Fireworks that wait for member 0's (``shared_body``: they fit readouts on its body)."""
    return list(trains[1:]) if config.committee.kind == "shared_body" else []


def labeling_workflow(config: CampaignConfig, iteration: int, keys: list[str]) -> Any:
    """The label Fireworks of the selected structures and the collect Firework after them."""
    labels = [
        Firework(
            [LabelTask()],
            spec=_dft_spec(config, iteration, "label", structure_key=key),
            name=f"{config.name} it{iteration} label {key[:10]}",
        )
        for key in keys
    ]
    collect_spec = _spec(config, iteration, "collect", "service", _allow_fizzled_parents=True)
    collect = Firework(
        [CollectTask()], spec=collect_spec, name=f"{config.name} it{iteration} collect"
    )
    links = {fw: [collect] for fw in labels}
    metadata = {"campaign": config.name, "iteration": iteration}
    return Workflow(
        [*labels, collect], links, name=workflow_name(config.name, iteration), metadata=metadata
    )


def iteration_workflow(
    config: CampaignConfig, iteration: int, seed_keys: list[str] | None = None
) -> Any:
    """The Workflow of one iteration up to select (select adds labels and collect).

    Parameters
    ----------
    config
        The campaign.
    iteration
        Iteration number (0 is the first).
    seed_keys
        Iteration 0: structures to label before the first committee is trained
        (the seed frames and the held-out test set).
    """
    name = config.name
    seeds = [
        Firework(
            [LabelTask()],
            spec=_dft_spec(config, iteration, "label", structure_key=key),
            name=f"{name} it{iteration} initial label {key[:10]}",
        )
        for key in seed_keys or []
    ]
    if seed_keys:
        seeds.append(
            Firework(
                [ReferenceTask()],
                spec=_dft_spec(config, iteration, "references"),
                name=f"{name} E0s",
            )
        )
    trains = [
        Firework(
            [TrainTask()],
            spec=_spec(config, iteration, "train", "train", member=m, _allow_fizzled_parents=True),
            name=f"{name} it{iteration} train m{m}",
        )
        for m in range(config.committee.members)
    ]
    walkers = [
        Firework(
            [ExploreTask()],
            spec=_spec(config, iteration, "explore", "md", **job, _allow_fizzled_parents=True),
            name=f"{name} it{iteration} md {label}",
        )
        for job, label in walker_jobs(config)
    ]
    select = Firework(
        [SelectTask()],
        spec=_spec(config, iteration, "select", "service"),
        name=f"{name} it{iteration} select",
    )
    links: dict[Any, list[Any]] = {fw: list(trains) for fw in seeds}
    links.update({fw: list(walkers) for fw in trains})
    links[trains[0]] = [*_shared_body_children(config, trains), *walkers]
    links.update({fw: [select] for fw in walkers})
    metadata = {"campaign": name, "iteration": iteration}
    return Workflow(
        [*seeds, *trains, *walkers, select],
        links,
        name=workflow_name(name, iteration),
        metadata=metadata,
    )


def final_workflow(config: CampaignConfig) -> Any:
    """The final fit: the deploy committee on every label, its record, its validation."""
    name = config.name
    trains = [
        Firework(
            [TrainTask()],
            spec=_spec(config, FINAL, "train", "train", member=m),
            name=f"{name} final train m{m}",
        )
        for m in range(config.committee.members)
    ]
    finalize = Firework(
        [FinalizeTask()],
        spec=_spec(config, FINAL, "finalize", "service", _allow_fizzled_parents=True),
        name=f"{name} final record",
    )
    fireworks = [*trains, finalize]
    links: dict[Any, list[Any]] = {fw: [finalize] for fw in trains}
    links[trains[0]] = [*_shared_body_children(config, trains), finalize]
    if config.final.validate_after:
        validate = Firework(
            [ValidateTask()],
            spec=_dft_spec(config, FINAL, "validate"),
            name=f"{name} validate",
        )
        fireworks.append(validate)
        links[finalize] = [validate]
    metadata = {"campaign": name, "iteration": FINAL}
    return Workflow(fireworks, links, name=workflow_name(name, FINAL), metadata=metadata)


# --------------------------------------------------------------------------- tasks that add Fireworks
# SelectTask and CollectTask build Workflows of the tasks above (and of
# themselves), so they live here with those Workflows: nothing imports back.


@firetask
class SelectTask(FiretaskBase):
    """Select frames for DFT and add their label Fireworks and collect."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        ctx = step_context(fw_spec)
        iteration = fw_spec["iteration"]
        result = select_for_labeling(ctx, iteration)
        additions = labeling_workflow(ctx.config, iteration, result["selected"])
        return FWAction(stored_data=result, additions=[additions])


def crashed_labels(fw_spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(structure key, error) of the label Fireworks that fizzled (``_fizzled_parents``).

    The error is the last line of what FireWorks stored for the launch.
    """
    crashed = []
    for parent in fw_spec.get("_fizzled_parents", []):
        key = parent.get("spec", {}).get("structure_key")
        if key:
            crashed.append((str(key), _launch_error(parent)))
    return crashed


def _launch_error(parent: dict[str, Any]) -> str:
    """The error text FireWorks stored for a fizzled parent, if any."""
    for launch in reversed(parent.get("launches", [])):
        stored = (launch.get("action") or {}).get("stored_data") or {}
        if stored.get("_exception"):
            details = stored["_exception"].get("_details") or stored["_exception"].get(
                "_stacktrace", ""
            )
            return str(details).strip().splitlines()[-1] if details else "unknown error"
    return "unknown error (no launch record)"


@firetask
class CollectTask(FiretaskBase):
    """Close the iteration; add the next iteration's Workflow, or the final fit at the end."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        ctx = step_context(fw_spec)
        iteration = fw_spec["iteration"]
        decision = collect_iteration(ctx, iteration, crashed_labels(fw_spec))
        settings = worker_settings(fw_spec)
        connection, _ = worker_store(settings)
        added = False
        if decision.go_on:
            added = add_iteration(ctx.config, iteration + 1, connection, settings.launchpad_name)
        elif decision.status in ("converged", "stopped"):
            added = add_iteration(ctx.config, FINAL, connection, settings.launchpad_name)
        return FWAction(
            stored_data={"status": decision.status, "reason": decision.reason, "next_added": added}
        )


def add_iteration(
    config: CampaignConfig, iteration: int | str, connection: Connection, launchpad_name: str
) -> bool:
    """Add the Workflow of ``iteration`` (or the final fit) unless it exists (collect calls this).

    Returns
    -------
    bool
        True if added now.
    """
    launchpad = shared_launchpad(connection, launchpad_name)
    if iteration_exists(launchpad, config.name, iteration):
        log.info("%s exists already", workflow_name(config.name, iteration))
        return False
    workflow = (
        final_workflow(config) if iteration == FINAL else iteration_workflow(config, iteration)
    )
    launchpad.add_wf(workflow)
    log.info("%s added", workflow_name(config.name, iteration))
    return True
