"""Exploration: MD walkers driven by the committee, stopped by observers.

See :mod:`alflow.exploration.walker` (``run_walker``),
:mod:`alflow.exploration.options` (``WalkerOptions``, what walkers share),
:mod:`alflow.exploration.plan` (``walker_plan``, ``walker_seed``),
:mod:`alflow.exploration.observers` (the stop checks) and
:mod:`alflow.exploration.batched` (walkers in one batched committee call).
"""

from __future__ import annotations

from alflow.exploration.options import WalkerOptions
from alflow.exploration.plan import walker_plan, walker_seed
from alflow.exploration.walker import Frame, WalkerResult, run_walker

__all__ = ["Frame", "WalkerOptions", "WalkerResult", "run_walker", "walker_plan", "walker_seed"]
