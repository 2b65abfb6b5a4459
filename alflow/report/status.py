"""Per-iteration status of a campaign, as a dict and as a readable table."""

from __future__ import annotations

from typing import Any

from alflow.store import Store
from alflow.store.store import CLASSIFIED_STATUSES

__all__ = ["campaign_status", "format_status"]

_COLUMNS = ("explored", *CLASSIFIED_STATUSES)


def campaign_status(store: Store, name: str) -> dict[str, Any]:
    """The campaign's status, counts per iteration, thresholds and errors.

    Returns
    -------
    dict
        ``{"campaign", "status", "reason", "labels_spent", "structures",
        "iterations": [...]}``; every iteration entry has the counts, the
        trust window (eV/Å), the committee's errors on the new labels and the
        decision taken.
    """
    campaign = store.campaign(name)
    iterations = []
    for doc in store.iteration_docs(name):
        entry = {k: v for k, v in doc.items() if k not in ("_id", "campaign")}
        iterations.append(entry)
    by_status = store.status_counts(name)
    return {
        "campaign": name,
        "status": campaign["status"],
        "reason": campaign.get("reason"),
        "created": campaign["created"],
        "updated": campaign["updated"],
        "labels_spent": store.count_labels(name),
        "label_budget": campaign["config"]["loop"]["max_dft_labels"],
        "structures": by_status,
        "iterations": iterations,
        "final": _final_summary(campaign),
    }


def _final_summary(campaign: dict[str, Any]) -> dict[str, Any] | None:
    """The campaign's result: the final fit's members, data, errors and validation."""
    final = campaign.get("final")
    if final is None:
        return None
    validation = (campaign.get("validation") or {}).get("summary")
    keep = ("status", "reason", "members", "n_labels", "epochs", "holdout_errors")
    return {**{k: final.get(k) for k in keep}, "validation": validation}


def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def format_status(report: dict[str, Any]) -> str:
    """A readable table of :func:`campaign_status`."""
    lines = [
        f"campaign {report['campaign']}: {report['status']}"
        + (f" ({report['reason']})" if report.get("reason") else ""),
        f"DFT labels spent: {report['labels_spent']} of {report['label_budget']}",
        "",
        "iter " + " ".join(f"{c:>10}" for c in _COLUMNS) + "   window eV/Å   F-RMSE eV/Å",
    ]
    for it in report["iterations"]:
        errors = it.get("errors") or {}
        window = f"{_fmt(it.get('trust_lo_eV_A'), '.3f')}-{_fmt(it.get('trust_hi_eV_A'), '.3f')}"
        counts = " ".join(f"{_fmt(it.get(c)):>10}" for c in _COLUMNS)
        lines.append(
            f"{it['iteration']:>4} {counts}   {window:>11}   {_fmt(errors.get('force_rmse_eV_A'), '.4f'):>11}"
        )
    lines.append(_final_line(report.get("final"), report["campaign"]))
    return "\n".join(lines)


def _final_line(final: dict[str, Any] | None, campaign: str) -> str:
    """One line naming the campaign's result (or saying there is none yet)."""
    if final is None:
        return "\nresult: no final fit yet (it runs when the campaign ends)"
    if final.get("status") != "trained":
        return f"\nresult: the final fit failed: {final.get('reason')}"
    holdout = (final.get("holdout_errors") or {}).get("force_rmse_eV_A")
    validated = "validated" if final.get("validation") else "not validated yet"
    return (
        f"\nresult: final fit {campaign}/final ({len(final['members'])} members, "
        f"{final['n_labels']} labels, {final['epochs']} epochs), held-out force RMSE "
        f"{_fmt(holdout, '.4f')} eV/Å, {validated}; "
        f"export: alflow model export --campaign {campaign} --out DIR"
    )
