"""The labeler of a campaign's reference method (one place that knows every oracle)."""

from __future__ import annotations

from alflow.config import EMTOracle, GPAWOracle
from alflow.errors import LabelingError
from alflow.labeling.base import Labeler
from alflow.labeling.emt import EMTLabeler
from alflow.labeling.gpaw_labeler import GPAWLabeler
from alflow.settings import Settings

__all__ = ["make_labeler"]


def make_labeler(oracle: EMTOracle | GPAWOracle, settings: Settings) -> Labeler:
    """Build the labeler of a campaign's oracle.

    Parameters
    ----------
    oracle
        ``campaign.labeling.oracle``.
    settings
        Worker settings (MPI launcher and ranks for GPAW).

    Returns
    -------
    Labeler

    Raises
    ------
    LabelingError
        Unknown oracle code.
    """
    code = getattr(oracle, "code", None)
    if code == "emt":
        return EMTLabeler()
    if code == "gpaw":
        return GPAWLabeler(oracle, settings)  # type: ignore[arg-type]
    raise LabelingError(f"unknown oracle code {code!r} (expected 'emt' or 'gpaw')")
