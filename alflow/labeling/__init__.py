"""Reference labels (energy, forces, stress) for the active-learning loop.

- :mod:`alflow.labeling.base`: :class:`LabelResult`, the :class:`Labeler`
  protocol, :func:`isolated_atom_energies`.
- :mod:`alflow.labeling.factory`: :func:`make_labeler`, the labeler of an oracle.
- :mod:`alflow.labeling.emt`: ASE's EMT in-process (a cheap stand-in oracle).
- :mod:`alflow.labeling.gpaw_labeler`: GPAW, one (MPI) process per calculation,
  running :mod:`alflow.labeling.gpaw_job`; its retries: :mod:`alflow.labeling.gpaw_retry`.
- :mod:`alflow.labeling.sanity`: :func:`sanity_reason`, checks run before labeling.

Nothing here imports GPAW; the job process does.
"""

from __future__ import annotations

from alflow.labeling.base import (
    Labeler,
    LabelingFailedError,
    LabelResult,
    isolated_atom_energies,
)
from alflow.labeling.factory import make_labeler
from alflow.labeling.sanity import sanity_reason

__all__ = [
    "LabelResult",
    "Labeler",
    "LabelingFailedError",
    "isolated_atom_energies",
    "make_labeler",
    "sanity_reason",
]
