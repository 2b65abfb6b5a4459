"""Test doubles and tiny fixtures for alflow's tests and benchmarks (like ``numpy.testing``).

Not used by alflow itself; shipped in the wheel because the benchmarks and
tests import them from an installed alflow.

- :mod:`alflow.testing.fake_committee`: :class:`FakeCommittee`, EMT plus
  seeded noise with the committee's result keys, for tests without torch.
- :mod:`alflow.testing.tiny_mace`: EMT copper frames (:func:`copper_frames`)
  and tiny MACE members trained side by side (:func:`train_side_by_side`),
  for tests and benchmarks with real MACE.

Nothing here imports torch or mace at import time.
"""

from __future__ import annotations

from alflow.testing.fake_committee import FakeCommittee
from alflow.testing.tiny_mace import A_CU_A, copper_frames, train_side_by_side

__all__ = ["A_CU_A", "FakeCommittee", "copper_frames", "train_side_by_side"]
