"""alflow's Firetasks at the path FireWorks stores them under (``{{alflow.workflow.tasks.X}}``).

Workflows in users' LaunchPads name each task by this module's path, so every
task is importable here, whatever module defines it: the step tasks in
:mod:`alflow.workflow.step_tasks`, the two that add Fireworks (select,
collect) in :mod:`alflow.workflow.builder`. Import tasks from here.
"""

from __future__ import annotations

from alflow.workflow.builder import CollectTask, SelectTask, crashed_labels
from alflow.workflow.step_tasks import (
    ExploreTask,
    FinalizeTask,
    LabelTask,
    ReferenceTask,
    TrainTask,
    ValidateTask,
    step_context,
    worker_settings,
    worker_store,
)

__all__ = [
    "CollectTask",
    "ExploreTask",
    "FinalizeTask",
    "LabelTask",
    "ReferenceTask",
    "SelectTask",
    "TrainTask",
    "ValidateTask",
    "crashed_labels",
    "step_context",
    "worker_settings",
    "worker_store",
]
