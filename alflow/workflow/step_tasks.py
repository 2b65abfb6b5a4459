"""The Firetasks that run one step each, and the step context they open.

Each task reads the validated campaign config and its indices from the spec,
opens the store named by the worker (``_fw_env``, else ``ALFLOW_*``
environment), calls one step and returns an FWAction. The two tasks that add
Fireworks (select, collect) live in :mod:`alflow.workflow.builder`, with the
Workflows they add. FireWorks stores every task under its name in
:mod:`alflow.workflow.tasks` (:func:`firetask`), which re-exports them all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TypeVar

from fireworks import FiretaskBase, FWAction

from alflow.config import CampaignConfig
from alflow.settings import Settings, load_settings
from alflow.steps.context import StepContext
from alflow.steps.final import finalize_fit
from alflow.steps.label import label_structure, reference_energies
from alflow.steps.train import train_committee_member
from alflow.store import Connection, Store, open_store
from alflow.structures import build_initial_structures
from alflow.validation import validate_potential

__all__ = [
    "TASKS_MODULE",
    "ExploreTask",
    "FinalizeTask",
    "LabelTask",
    "ReferenceTask",
    "TrainTask",
    "ValidateTask",
    "firetask",
    "step_context",
    "worker_settings",
    "worker_store",
]

log = logging.getLogger(__name__)

#: The module whose path FireWorks stores for every alflow Firetask (``_fw_name``).
TASKS_MODULE = "alflow.workflow.tasks"

_Task = TypeVar("_Task", bound=type)


def firetask(cls: _Task) -> _Task:
    """Name a Firetask ``{{alflow.workflow.tasks.<class>}}``, wherever it is defined.

    FireWorks' ``explicit_serialize`` would store the defining module's path;
    stored workflows refer to :mod:`alflow.workflow.tasks`, which re-exports
    every task, so that name stays valid when a task moves between modules.
    """
    cls._fw_name = f"{{{{{TASKS_MODULE}.{cls.__name__}}}}}"
    return cls


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


@firetask
class ReferenceTask(FiretaskBase):
    """Isolated-atom energies (MACE E0s) for the campaign's elements."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        ctx = step_context(fw_spec)
        elements = {
            s
            for a in build_initial_structures(ctx.config.initial, ctx.config.base_dir)
            for s in a.symbols
        }
        energies = reference_energies(ctx, sorted(elements))
        return FWAction(stored_data={"e0s_eV": energies})


@firetask
class LabelTask(FiretaskBase):
    """Label one structure (``structure_key``) with the campaign's reference method."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        ctx = step_context(fw_spec)
        summary = label_structure(ctx, fw_spec["iteration"], fw_spec["structure_key"])
        return FWAction(stored_data=summary, mod_spec=[{"_push": {"labels": summary}}])


@firetask
class TrainTask(FiretaskBase):
    """Train committee member ``member``."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        ctx = step_context(fw_spec)
        summary = train_committee_member(ctx, fw_spec["iteration"], fw_spec["member"])
        return FWAction(stored_data=summary, mod_spec=[{"_push": {"models": summary}}])


@firetask
class ExploreTask(FiretaskBase):
    """Run MD walker ``walker``, or the walkers ``walkers`` batched, with the iteration's committee."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        # lazy: its ase.io import loads gpaw through ASE's plugins
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


@firetask
class FinalizeTask(FiretaskBase):
    """Record the final fit (members, data, held-out errors) as the campaign's result."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        record = finalize_fit(step_context(fw_spec))
        summary = {k: record.get(k) for k in ("status", "n_members", "n_labels", "reason")}
        return FWAction(stored_data=summary)


@firetask
class ValidateTask(FiretaskBase):
    """Validate the final committee (dimers, E(V), MD stability, held-out, transfer)."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        ctx = step_context(fw_spec)
        summary = validate_potential(ctx, out_dir=ctx.workdir / "validation")
        return FWAction(stored_data={"validation": summary.get("summary")})
