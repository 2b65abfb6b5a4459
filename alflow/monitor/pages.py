"""The alflow pages of the web GUI: a campaign's figures, iterations and workflows.

A Flask blueprint mounted at ``/alflow`` on FireWorks' own web app. Pages
extend FireWorks' ``base.html`` and reload themselves when the campaign's
state changes (a small script polls ``/alflow/<campaign>/version``, a cheap
fingerprint of the state computed on the server, see :func:`campaign_version`).
Their Jinja templates are package data in ``alflow/monitor/templates/``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from alflow.errors import StoreError
from alflow.report.plots import FIGURES, render_figure, render_validation_figure, validation_figures
from alflow.report.summary import core_hours, iteration_rows, learning_curve
from alflow.validation.figures import VALIDATION_FIGURES
from alflow.workflow.views import campaign_workflows, workflow_states

__all__ = ["FigureCache", "VersionCache", "blueprint", "campaign_version"]

log = logging.getLogger(__name__)


_NAV = (
    b'<div class="container" id="alflow-nav" style="margin-top:-10px">'
    b'<a href="/alflow/">alflow campaigns: figures and iterations</a></div>'
)


class FigureCache:
    """PNG bytes of recently drawn figures, keyed by (campaign, figure, state version)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        """The cached PNG, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, str, str], png: bytes) -> None:
        """Remember a PNG, dropping the oldest beyond ``size``."""
        with self._lock:
            self._items[key] = png
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def campaign_version(view: Any, campaign: str) -> str:
    """A string that changes when the campaign's state changes.

    A fingerprint of cheap server-side reads: the campaign document's status
    and update time, the number of its iteration documents and of its DFT
    labels (indexed), and its workflows' update times and Firework states
    (one workflow per iteration). Structures are not counted (a count reads
    every matching index entry: seconds at 100,000 structures); what the
    steps write into them shows when their Firework changes state, as the
    Firework ends.
    """
    store, launchpad = view.store, view.launchpad
    versions = store.campaign_versions(campaign)
    workflows = workflow_states(launchpad, campaign)
    parts = [*versions.values(), workflows]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class VersionCache:
    """:func:`campaign_version` of each campaign, reused for ``max_age_s`` seconds.

    A page load asks for the version once for the page and once per figure,
    and every open page polls it: within ``max_age_s`` they share one
    computation.
    """

    def __init__(self, max_age_s: float = 1.0) -> None:
        self.max_age_s = max_age_s
        self._items: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, view: Any, campaign: str) -> str:
        """The campaign's version, computed at most once per ``max_age_s``."""
        now = time.monotonic()
        with self._lock:
            cached = self._items.get(campaign)
        if cached is not None and now - cached[0] < self.max_age_s:
            return cached[1]
        version = campaign_version(view, campaign)
        with self._lock:
            self._items[campaign] = (now, version)
        return version


def _dash(value: Any, spec: str = "{}") -> str:
    if isinstance(value, float) and spec == "{}":
        spec = "{:.4g}"
    return "–" if value is None else spec.format(value)


def _validation_block(
    doc: dict[str, Any], name: str, figures: list[tuple[str, str]], version: str
) -> dict[str, Any] | None:
    """The campaign page's validation block: headline figures and figure URLs (None: none)."""
    from flask import url_for

    validation = doc.get("validation")
    if not validation:
        return None
    return {
        "created": validation.get("created") or validation.get("updated"),
        "summary": validation.get("summary") or {},
        "figures": [
            {
                "name": fig,
                "title": title,
                "url": url_for("alflow.figure", name=name, figure=fig, v=version),
            }
            for fig, title in figures
        ],
    }


def _campaign_context(view: Any, name: str, version: str) -> dict[str, Any]:
    """What the campaign page shows: status, cost, iterations, workflows, figures, validation."""
    from flask import url_for

    store = view.store
    doc = store.campaign(name)
    cost = core_hours(store, name)
    curve = learning_curve(store, name)
    figures = [
        {
            "name": fig,
            "title": title,
            "url": url_for("alflow.figure", name=name, figure=fig, v=version),
        }
        for fig, (title, _) in FIGURES.items()
    ]
    return {
        "name": name,
        "status": doc["status"],
        "reason": doc.get("reason"),
        "labels": store.count_labels(name),
        "budget": doc.get("config", {}).get("loop", {}).get("max_dft_labels"),
        "core_hours": float(cost.cumulative_core_hours[-1]) if len(cost.iteration) else 0.0,
        "holdout": (
            "held-out errors recorded"
            if curve.has_holdout
            else "no held-out set: errors are on newly labeled frames"
        ),
        "rows": iteration_rows(store, name),
        "workflows": campaign_workflows(view.launchpad, name),
        "figures": figures,
        "validation": _validation_block(doc, name, validation_figures(store, name), version),
        "version": version,
    }


def blueprint() -> Any:
    """A new Flask blueprint with the alflow pages (reads ``flask.g.alflow_view``)."""
    from flask import (
        Blueprint,
        Response,
        abort,
        current_app,
        g,
        jsonify,
        render_template,
    )

    pages = Blueprint("alflow", __name__, url_prefix="/alflow", template_folder="templates")

    def state() -> Any:
        return current_app.extensions["alflow"]

    def view_for(name: str) -> Any:
        view = g.alflow_view
        if not view.store.has_campaign(name):
            abort(404, description=f"no campaign '{name}' in this store")
        return view

    @pages.route("/")
    def index() -> str:
        store = g.alflow_view.store
        campaigns = [
            {
                "name": name,
                "status": store.campaign(name)["status"],
                "iterations": store.count_iterations(name),
                "labels": store.count_labels(name),
            }
            for name in store.campaign_names()
        ]
        return render_template("alflow_index.html", campaigns=campaigns, store=state().live.display)

    @pages.route("/<name>/")
    def campaign(name: str) -> str:
        view = view_for(name)
        version = state().versions.get(view, name)
        context = _campaign_context(view, name, version)
        return render_template(
            "alflow_campaign.html", **context, refresh_s=state().refresh_s, dash=_dash
        )

    @pages.route("/<name>/version")
    def version(name: str) -> Any:
        view = view_for(name)
        return jsonify({"version": state().versions.get(view, name)})

    @pages.route("/<name>/<figure>.png")
    def figure(name: str, figure: str) -> Any:
        if figure not in FIGURES and figure not in VALIDATION_FIGURES:
            abort(404, description=f"no figure '{figure}'")
        draw = render_figure if figure in FIGURES else render_validation_figure
        view = view_for(name)
        key = (name, figure, state().versions.get(view, name))
        cache: FigureCache = state().figures
        png = cache.get(key)
        if png is None:
            try:
                png = draw(view.store, name, figure)
            except StoreError as exc:
                abort(404, description=str(exc))
            cache.put(key, png)
        response = Response(png, mimetype="image/png")
        response.headers["Cache-Control"] = "no-cache"
        return response

    return pages


def inject_nav(body: bytes) -> bytes:
    """Add a link to the alflow pages under FireWorks' page header."""
    marker = b'<hr class="myhrline">'
    if marker not in body or b'id="alflow-nav"' in body:
        return body
    return body.replace(marker, marker + _NAV, 1)
