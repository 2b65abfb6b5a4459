"""The MACE committee: training members, evaluating them together, measuring disagreement.

- :mod:`alflow.committee.train`: :func:`train_member` runs mace-torch's
  ``run_train`` in its own process and returns a :class:`TrainedMember`.
- :mod:`alflow.committee.calculator`: :class:`CommitteeCalculator` (ASE) and
  :func:`load_committee`.
- :mod:`alflow.committee.shared_body`: :class:`SharedBodyCalculator` and
  :func:`load_shared_body_committee` (``committee.kind: shared_body``: one
  body, every member's readouts); :mod:`alflow.committee.readout_fit`:
  :func:`train_readouts` (a member's readouts on member 0's frozen body).
- :func:`load_committee_of_kind`: the loader of a committee kind.
- :mod:`alflow.committee.uncertainty`: force/energy deviations (numpy only).

Test doubles (``FakeCommittee``, tiny copper members) are in :mod:`alflow.testing`.

Nothing here imports torch or mace at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alflow.committee.calculator import CommitteeCalculator, load_committee
from alflow.committee.readout_fit import train_readouts
from alflow.committee.shared_body import SharedBodyCalculator, load_shared_body_committee
from alflow.committee.train import TrainedMember, train_member
from alflow.committee.uncertainty import (
    committee_statistics,
    energy_deviation_per_atom,
    force_deviation_per_atom,
    max_force_deviation,
)
from alflow.errors import TrainingError

__all__ = [
    "COMMITTEE_KINDS",
    "CommitteeCalculator",
    "SharedBodyCalculator",
    "TrainedMember",
    "committee_statistics",
    "energy_deviation_per_atom",
    "force_deviation_per_atom",
    "load_committee",
    "load_committee_of_kind",
    "load_shared_body_committee",
    "max_force_deviation",
    "train_member",
    "train_readouts",
]

#: ``committee.kind`` values and what loads each.
COMMITTEE_KINDS = ("independent", "shared_body")


def load_committee_of_kind(kind: str, model_paths: Sequence[Path], **options: Any) -> Any:
    """Load a committee of kind ``kind`` (``committee.kind``) from its member files.

    Parameters
    ----------
    kind
        ``"independent"`` (:func:`load_committee`) or ``"shared_body"``
        (:func:`load_shared_body_committee`).
    model_paths
        Member ``.model`` files in member order.
    **options
        ``device``, ``dtype``, ``threads``, ``propagator``, ``always_stress``.

    Returns
    -------
    CommitteeCalculator
        (a :class:`SharedBodyCalculator` for ``shared_body``).

    Raises
    ------
    TrainingError
        An unknown kind, unreadable files, or members that do not fit the kind.
    """
    if kind == "independent":
        return load_committee(model_paths, **options)
    if kind == "shared_body":
        return load_shared_body_committee(model_paths, **options)
    raise TrainingError(f"unknown committee kind {kind!r}; known: {list(COMMITTEE_KINDS)}")
