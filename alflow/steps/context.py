"""What every step needs: the store, the campaign, the worker settings, a directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alflow.config import CampaignConfig
from alflow.settings import Settings
from alflow.store import Store

__all__ = ["StepContext"]


@dataclass(frozen=True)
class StepContext:
    """Inputs shared by all steps.

    Attributes
    ----------
    store
        The alflow data store.
    config
        The campaign's validated configuration.
    settings
        The worker's settings (MPI, device, threads).
    workdir
        The directory this step may write to (the Firework's launch directory).
    """

    store: Store
    config: CampaignConfig
    settings: Settings
    workdir: Path

    @property
    def campaign(self) -> str:
        """The campaign name."""
        return self.config.name
