"""The campaign's result as an ASE calculator: the final committee, from the store."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from alflow.committee import load_committee
from alflow.errors import StoreError
from alflow.store import Store, open_reader
from alflow.store.store import FINAL

__all__ = ["final_record", "load_potential"]


def final_record(store: Store, campaign: str) -> dict[str, Any]:
    """The campaign's trained final fit; StoreError says how to get one if there is none.

    Raises
    ------
    StoreError
        Unknown campaign (the known ones are named), no final fit yet, or a
        final fit that failed (with its reason).
    """
    record = store.final(campaign)
    if record is None:
        raise StoreError(
            f"campaign '{campaign}' has no final fit yet: it is still running or ended before "
            "alflow had one; run 'alflow run CAMPAIGN.yaml' again (the same file) to train it"
        )
    if record.get("status") != "trained":
        raise StoreError(
            f"the final fit of campaign '{campaign}' failed: {record.get('reason')}; "
            "fix the cause and run 'alflow run CAMPAIGN.yaml --retry-fizzled'"
        )
    return record


def load_potential(
    store: str | Path | Store = "alflow-store",
    campaign: str | None = None,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    directory: str | Path | None = None,
) -> Any:
    """The final committee of ``campaign`` as one ASE calculator.

    The energy, forces and stress are the committee mean; ``calc.results``
    also holds ``forces_std`` (per-atom force deviation, eV/Å),
    ``max_force_dev`` and the members' values (see
    :class:`alflow.committee.CommitteeCalculator`).

    Parameters
    ----------
    store
        A store directory, a ``mongodb://`` URI or an open :class:`Store`.
    campaign
        The campaign; None: the store's only campaign with a final fit.
    device, dtype
        torch device; dtype ``float32``/``float64`` (default: the campaign's).
    directory
        Where the model files are written (sha256 checked); default: a
        temporary directory removed once they are loaded.

    Raises
    ------
    StoreError
        No such store or campaign, or no final fit (the message says how to run one).
    TrainingError
        A model file whose sha256 does not match the store's record.
    """
    if not isinstance(store, Store):
        store = open_reader(str(store))
    if campaign is None:
        campaign = _only_final_campaign(store)
    record = final_record(store, campaign)
    config = store.campaign_config(campaign)
    models = store.trained_models(campaign, FINAL)
    with tempfile.TemporaryDirectory(prefix="alflow-potential-") as tmp:
        target = Path(directory) if directory is not None else Path(tmp)
        paths = [store.fetch_model(m["_id"], target) for m in models]
        calc = load_committee(paths, device=device, dtype=dtype or config.committee.training.dtype)
    calc.final_record = record
    return calc


def _only_final_campaign(store: Store) -> str:
    names = [n for n in store.campaign_names() if store.final(n) is not None]
    if len(names) != 1:
        raise StoreError(
            "name the campaign: "
            + (
                f"campaigns with a final fit: {', '.join(names)}"
                if names
                else "no campaign in this store has a final fit"
            )
        )
    return names[0]
