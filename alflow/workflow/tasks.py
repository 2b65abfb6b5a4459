"""Firetasks: thin adapters from a FireWorks spec to alflow's step functions.

Each task reads the validated campaign config and its indices from the spec,
opens the store named by the worker (``_fw_env``, else ``ALFLOW_*``
environment), calls one step and returns an FWAction. Dynamic actions
(additions) are the only Firetask of their Firework.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fireworks import FiretaskBase, FWAction, explicit_serialize

from alflow.config import CampaignConfig
from alflow.settings import Settings, load_settings
from alflow.steps.context import StepContext
from alflow.store import Connection, Store, open_store

__all__ = [
    "CollectTask",
    "ExploreTask",
    "FinalizeTask",
    "LabelTask",
    "ReferenceTask",
    "SelectTask",
    "TrainTask",
    "ValidateTask",
]

log = logging.getLogger(__name__)


def worker_settings(fw_spec: dict[str, Any]) -> Settings:
    """Settings of the worker running this Firework (``_fw_env`` over the environment)."""
    env = fw_spec.get("_fw_env") or {}
    return load_settings(overrides={k: v for k, v in env.items() if k in Settings.model_fields})


_OPEN: dict[tuple[str, str], tuple[Connection, Store]] = {}


def worker_store(settings: Settings) -> tuple[Connection, Store]:
    """This worker process's connection and Store, opened once (indexes created once)."""
    key = (settings.store, settings.store_name)
    if key not in _OPEN:
        _OPEN[key] = open_store(settings.store, db_name=settings.store_name, settings=settings)
    return _OPEN[key]


def step_context(fw_spec: dict[str, Any]) -> StepContext:
    """Build the step context for the Firework being run."""
    settings = worker_settings(fw_spec)
    config = CampaignConfig.model_validate(fw_spec["config"])
    _, store = worker_store(settings)
    return StepContext(store=store, config=config, settings=settings, workdir=Path(os.getcwd()))


@explicit_serialize
class ReferenceTask(FiretaskBase):
    """Isolated-atom energies (MACE E0s) for the campaign's elements."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.steps.label import reference_energies
        from alflow.structures import build_initial_structures

        ctx = step_context(fw_spec)
        elements = {
            s
            for a in build_initial_structures(ctx.config.initial, ctx.config.base_dir)
            for s in a.symbols
        }
        energies = reference_energies(ctx, sorted(elements))
        return FWAction(stored_data={"e0s_eV": energies})


@explicit_serialize
class LabelTask(FiretaskBase):
    """Label one structure (``structure_key``) with the campaign's reference method."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.steps.label import label_structure

        ctx = step_context(fw_spec)
        summary = label_structure(ctx, fw_spec["iteration"], fw_spec["structure_key"])
        return FWAction(stored_data=summary, mod_spec=[{"_push": {"labels": summary}}])


@explicit_serialize
class TrainTask(FiretaskBase):
    """Train committee member ``member``."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.steps.train import train_committee_member

        ctx = step_context(fw_spec)
        summary = train_committee_member(ctx, fw_spec["iteration"], fw_spec["member"])
        return FWAction(stored_data=summary, mod_spec=[{"_push": {"models": summary}}])


@explicit_serialize
class ExploreTask(FiretaskBase):
    """Run MD walker ``walker``, or the walkers ``walkers`` batched, with the iteration's committee."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.steps.explore import explore_walker, explore_walkers

        ctx = step_context(fw_spec)
        if "walkers" in fw_spec:
            summaries = explore_walkers(ctx, fw_spec["iteration"], fw_spec["walkers"])
            return FWAction(
                stored_data={"walkers": summaries},
                mod_spec=[{"_push_all": {"walkers": summaries}}],
            )
        summary = explore_walker(ctx, fw_spec["iteration"], fw_spec["walker"])
        return FWAction(stored_data=summary, mod_spec=[{"_push": {"walkers": summary}}])


@explicit_serialize
class SelectTask(FiretaskBase):
    """Select frames for DFT and add their label Fireworks and collect."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.steps.select import select_for_labeling
        from alflow.workflow.builder import labeling_workflow

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


@explicit_serialize
class CollectTask(FiretaskBase):
    """Close the iteration; add the next iteration's Workflow, or the final fit at the end."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.steps.collect import collect_iteration
        from alflow.store.store import FINAL
        from alflow.workflow.submit import add_iteration

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


@explicit_serialize
class FinalizeTask(FiretaskBase):
    """Record the final fit (members, data, held-out errors) as the campaign's result."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.steps.final import finalize_fit

        record = finalize_fit(step_context(fw_spec))
        summary = {k: record.get(k) for k in ("status", "n_members", "n_labels", "reason")}
        return FWAction(stored_data=summary)


@explicit_serialize
class ValidateTask(FiretaskBase):
    """Validate the final committee (dimers, E(V), MD stability, held-out, transfer)."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.validation import validate_potential

        ctx = step_context(fw_spec)
        summary = validate_potential(ctx, out_dir=ctx.workdir / "validation")
        return FWAction(stored_data={"validation": summary.get("summary")})
