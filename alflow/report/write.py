"""``alflow report``: a campaign's figures and its markdown summary, written to a directory."""

from __future__ import annotations

import logging
from pathlib import Path

from alflow.report.plots import (
    FIGURES,
    render_figure,
    render_validation_figure,
    validation_figures,
)
from alflow.report.summary import markdown_summary
from alflow.store import Store

__all__ = ["write_report"]

log = logging.getLogger(__name__)


def write_report(store: Store, campaign: str, out_dir: str | Path) -> list[Path]:
    """Write the campaign's PNG figures and ``summary.md`` to ``out_dir``.

    Returns
    -------
    list of Path
        The files written (figures first, the summary last).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store.campaign(campaign)  # StoreError for an unknown campaign, before writing anything
    written: list[Path] = []
    figures: list[tuple[str, str]] = []
    for name, (title, _) in FIGURES.items():
        path = out / f"{campaign}-{name}.png"
        path.write_bytes(render_figure(store, campaign, name))
        written.append(path)
        figures.append((title, path.name))
        log.info("wrote %s", path)
    checks: list[tuple[str, str]] = []
    for name, title in validation_figures(store, campaign):
        path = out / f"{campaign}-{name}.png"
        path.write_bytes(render_validation_figure(store, campaign, name))
        written.append(path)
        checks.append((title, path.name))
    summary = out / f"{campaign}-summary.md"
    summary.write_text(markdown_summary(store, campaign, figures, checks), encoding="utf-8")
    written.append(summary)
    return written
