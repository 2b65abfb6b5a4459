"""Put a campaign's workflows on a LaunchPad (first iteration, and each next one)."""

from __future__ import annotations

import logging
from typing import Any

from ase import Atoms

from alflow.config import CampaignConfig
from alflow.contacts import short_range_frames
from alflow.errors import ConfigError
from alflow.store import Connection, Store
from alflow.store.store import FINAL
from alflow.structures import (
    build_initial_structures,
    holdout_frames,
    seed_frames,
    structure_key,
)
from alflow.workflow.builder import final_workflow, iteration_workflow, workflow_name
from alflow.workflow.launchpad import open_launchpad

__all__ = ["add_iteration", "iteration_exists", "prepare_campaign", "submit_campaign"]

#: LaunchPads opened by this process (a worker's collect adds iterations to one).
_launchpads: dict[tuple[str, str], Any] = {}

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
        from ase.calculators.emt import parameters as emt_parameters

        unsupported = [s for s in symbols if s not in emt_parameters]
        if unsupported:
            raise ConfigError(
                f"{config.base_dir}: labeling.oracle: EMT has no parameters for "
                f"{', '.join(unsupported)} (EMT knows {' '.join(sorted(emt_parameters))})"
            )
    if config.committee.foundation_model is not None:  # before any worker starts
        from alflow.committee.foundation import check_campaign_foundation

        check_campaign_foundation(config, symbols)
    return structures


def iteration_exists(launchpad: Any, campaign: str, iteration: int | str) -> bool:
    """True if the LaunchPad holds a Workflow for (campaign, iteration or FINAL)."""
    query = {"metadata.campaign": campaign, "metadata.iteration": iteration}
    return launchpad.workflows.count_documents(query) > 0


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


def add_iteration(
    config: CampaignConfig, iteration: int | str, connection: Connection, launchpad_name: str
) -> bool:
    """Add the Workflow of ``iteration`` (or the final fit) unless it exists (collect calls this).

    Returns
    -------
    bool
        True if added now.
    """
    key = (connection.uri, launchpad_name)
    if key not in _launchpads:
        _launchpads[key] = open_launchpad(connection, launchpad_name)
    launchpad = _launchpads[key]
    if iteration_exists(launchpad, config.name, iteration):
        log.info("%s exists already", workflow_name(config.name, iteration))
        return False
    workflow = (
        final_workflow(config) if iteration == FINAL else iteration_workflow(config, iteration)
    )
    launchpad.add_wf(workflow)
    log.info("%s added", workflow_name(config.name, iteration))
    return True
