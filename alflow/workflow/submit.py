"""Put a campaign on a LaunchPad: checks, its structures, its first iteration.

Collect adds each next iteration (:func:`alflow.workflow.builder.add_iteration`).
"""

from __future__ import annotations

import logging
from typing import Any

from ase import Atoms

from alflow.committee.foundation import check_campaign_foundation
from alflow.config import CampaignConfig
from alflow.contacts import short_range_frames
from alflow.errors import ConfigError
from alflow.store import Store
from alflow.store.store import FINAL
from alflow.structures import (
    build_initial_structures,
    holdout_frames,
    seed_frames,
    structure_key,
)
from alflow.workflow.builder import final_workflow, iteration_workflow, workflow_name
from alflow.workflow.launchpad import iteration_exists

__all__ = ["prepare_campaign", "submit_campaign"]

log = logging.getLogger(__name__)


def prepare_campaign(config: CampaignConfig) -> list[Atoms]:
    """Check everything that can be checked before anything is written.

    Builds the initial structures (missing files, unknown elements, NaNs),
    checks that the reference method supports every element and that
    ``committee.foundation_model`` (if set) is a MACE model that fits.

    Returns
    -------
    list of ase.Atoms
        The initial structures.

    Raises
    ------
    ConfigError
    """
    structures = build_initial_structures(config.initial, config.base_dir)
    symbols = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
    if config.labeling.oracle.code == "emt":
        from ase.calculators.emt import parameters as emt_parameters  # loads scipy (slow)

        unsupported = [s for s in symbols if s not in emt_parameters]
        if unsupported:
            raise ConfigError(
                f"{config.base_dir}: labeling.oracle: EMT has no parameters for "
                f"{', '.join(unsupported)} (EMT knows {' '.join(sorted(emt_parameters))})"
            )
    if config.committee.foundation_model is not None:  # before any worker starts
        check_campaign_foundation(config, symbols)
    return structures


def submit_campaign(config: CampaignConfig, store: Store, launchpad: Any) -> bool:
    """Register the campaign and add its first iteration (idempotent).

    Returns
    -------
    bool
        True if the first iteration was added now, False if it existed.
    """
    structures = prepare_campaign(config)
    store.register_campaign(config)
    if iteration_exists(launchpad, config.name, 0):
        _add_missing_final(config, store, launchpad)
        return False
    unique_keys: list[str] = []
    for kind, status, frames in (
        ("seed", "seed", seed_frames(structures, config.initial, config.committee.seed)),
        ("short_range", "seed", short_range_frames(structures, config.initial.short_range)),
        ("holdout", "holdout", holdout_frames(structures, config.initial, config.committee.seed)),
    ):
        keys = [structure_key(a) for a in frames]
        origins = [{"kind": kind, "iteration": 0, "index": i} for i in range(len(frames))]
        store.add_structures(config.name, frames, keys, iteration=0, status=status, origins=origins)
        for key in keys:
            if key not in unique_keys:
                unique_keys.append(key)
    launchpad.add_wf(iteration_workflow(config, 0, seed_keys=unique_keys))
    log.info(
        "campaign '%s': %s added with %d seed and held-out frames",
        config.name,
        workflow_name(config.name, 0),
        len(unique_keys),
    )
    return True


def _add_missing_final(config: CampaignConfig, store: Store, launchpad: Any) -> None:
    """An ended campaign from before the final fit existed gets it now (resume)."""
    ended = store.campaign(config.name)["status"] in ("converged", "stopped")
    if ended and not iteration_exists(launchpad, config.name, FINAL):
        launchpad.add_wf(final_workflow(config))
        log.info(
            "campaign '%s' ended without a final fit: %s added",
            config.name,
            workflow_name(config.name, FINAL),
        )
