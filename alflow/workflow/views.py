"""Read-only views of a campaign's FireWorks state for the web GUI (the FireWorks side of it).

The monitor (``alflow/monitor``) shows what these return; it does not query
FireWorks' collections itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["campaign_workflows", "fireworks_web_app", "reader_launchpad", "workflow_states"]


def reader_launchpad(uri: str, name: str) -> Any:
    """FireWorks' URI-mode LaunchPad on ``uri`` for reading (initialises nothing)."""
    from fireworks import LaunchPad

    # the LaunchPad constructor only connects; a reader never initialises one
    return LaunchPad(host=uri, name=name, uri_mode=True, strm_lvl="WARNING")


def fireworks_web_app() -> Any:
    """FireWorks' own Flask app (a module-level object: one per process)."""
    from fireworks.flask_site.app import app

    return app


def campaign_workflows(launchpad: Any, campaign: str) -> list[dict[str, Any]]:
    """The campaign's workflows by iteration: name, state, first fw_id, Fireworks per state."""
    out = []
    for wf in launchpad.workflows.find(
        {"metadata.campaign": campaign}, {"name": 1, "state": 1, "nodes": 1, "metadata": 1}
    ).sort("metadata.iteration", 1):
        states = Counter(
            fw["state"]
            for fw in launchpad.fireworks.find({"fw_id": {"$in": wf["nodes"]}}, {"state": 1})
        )
        out.append(
            {
                "name": wf["name"],
                "state": wf["state"],
                "fw_id": min(wf["nodes"]) if wf["nodes"] else 0,
                "iteration": wf.get("metadata", {}).get("iteration"),
                "states": ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
            }
        )
    return out


def workflow_states(launchpad: Any, campaign: str) -> list[tuple[Any, ...]]:
    """(name, state, update time, Fireworks per state) of each workflow: a cheap fingerprint."""
    return [
        (
            wf.get("name"),
            wf.get("state"),
            wf.get("updated_on"),
            sorted(wf.get("fw_states", {}).items()),
        )
        for wf in launchpad.workflows.find(
            {"metadata.campaign": campaign},
            {"name": 1, "state": 1, "updated_on": 1, "fw_states": 1},
        ).sort("metadata.iteration", 1)
    ]
