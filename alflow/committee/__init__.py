"""The MACE committee: training members, evaluating them together, measuring disagreement.

- :mod:`alflow.committee.train`: :func:`train_member` runs mace-torch's
  ``run_train`` in its own process and returns a :class:`TrainedMember`.
- :mod:`alflow.committee.calculator`: :class:`CommitteeCalculator` (ASE) and
  :func:`load_committee`.
- :mod:`alflow.committee.uncertainty`: force/energy deviations (numpy only).
- :mod:`alflow.committee.fake`: :class:`FakeCommittee`, EMT plus seeded noise,
  for tests without torch.
- :mod:`alflow.committee.testing`: EMT copper frames and tiny members
  trained side by side, for tests and benchmarks with real MACE.

Nothing here imports torch or mace at import time.
"""

from __future__ import annotations

from alflow.committee.calculator import CommitteeCalculator, load_committee
from alflow.committee.fake import FakeCommittee
from alflow.committee.train import TrainedMember, train_member
from alflow.committee.uncertainty import (
    committee_statistics,
    energy_deviation_per_atom,
    force_deviation_per_atom,
    max_force_deviation,
)

__all__ = [
    "CommitteeCalculator",
    "FakeCommittee",
    "TrainedMember",
    "committee_statistics",
    "energy_deviation_per_atom",
    "force_deviation_per_atom",
    "load_committee",
    "max_force_deviation",
    "train_member",
]
