"""What every step needs: the store, the campaign, the worker settings, a directory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alflow.committee import load_committee_of_kind
from alflow.committee.uncertainty import MIN_MEMBERS
from alflow.config import CampaignConfig
from alflow.contacts import ContactLimits
from alflow.labeling import Labeler, make_labeler
from alflow.settings import Settings
from alflow.store import Store

__all__ = ["StepContext"]

log = logging.getLogger(__name__)


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

    def labeler(self) -> Labeler:
        """The campaign's reference method, set up for this worker."""
        return make_labeler(self.config.labeling.oracle, self.settings)

    @property
    def parameters_hash(self) -> str:
        """Hash of the campaign's labeling parameters (the key of its labels)."""
        return self.labeler().parameters_hash()

    def labels_left(self) -> int:
        """DFT labels the campaign may still spend: ``loop.max_dft_labels`` less those spent.

        May be negative; an iteration's budget within it
        (:func:`alflow.selection.iteration_budget`) is the one place it is clamped.
        """
        return self.config.loop.max_dft_labels - self.store.count_labels(self.campaign)

    def contact_limits(self, iteration: int | str) -> ContactLimits:
        """How close atoms may come (walkers, frames sent to DFT): from the iteration's data."""
        models = self.store.trained_models(self.campaign, iteration)
        return ContactLimits.from_record(
            self.config.selection.sanity, models[0] if models else None
        )

    def iteration_committee(self, iteration: int) -> Any | None:
        """The committee trained in ``iteration``, or None (logged) when it cannot be had.

        For steps that work without one (select, its re-scoring, held-out errors).
        """
        models = self.store.trained_models(self.campaign, iteration)
        if len(models) < MIN_MEMBERS:
            log.info("iteration %d: %d trained members, no committee", iteration, len(models))
            return None
        try:
            return self.load_committee(models)
        except Exception as exc:  # optional path: the caller works without the committee
            log.warning("iteration %d: committee not loaded (%s)", iteration, exc)
            return None

    def load_committee(self, models: Sequence[dict[str, Any]], **options: Any) -> Any:
        """Fetch ``models`` (store records, sha256 checked) and load them as one calculator.

        ``options`` go to the loader of the campaign's ``committee.kind``
        (:func:`alflow.committee.load_committee_of_kind`: ``propagator``,
        ``always_stress``); device, dtype and threads come from the settings
        and the campaign.
        """
        paths = [self.store.fetch_model(m["_id"], self.workdir / "models") for m in models]
        return load_committee_of_kind(
            self.config.committee.kind,
            paths,
            device=self.settings.device,
            dtype=self.config.committee.training.dtype,
            threads=self.settings.torch_threads,
            **options,
        )
