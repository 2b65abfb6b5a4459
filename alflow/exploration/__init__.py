"""Exploration: MD walkers driven by the committee, stopped by observers.

See :mod:`alflow.exploration.walker` (``run_walker``, ``walker_plan``) and
:mod:`alflow.exploration.observers` (the stop checks).
"""

from __future__ import annotations

from alflow.exploration.walker import Frame, WalkerResult, run_walker, walker_plan, walker_seed

__all__ = ["Frame", "WalkerResult", "run_walker", "walker_plan", "walker_seed"]
