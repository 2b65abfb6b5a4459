"""The figures a practitioner looks at, drawn with matplotlib's Agg canvas.

Each ``plot_*`` function takes the plain data of :mod:`alflow.report.summary`
and returns a ``matplotlib.figure.Figure`` attached to an Agg canvas. Nothing
touches pyplot or the global backend, so figures can be drawn from web-server
threads; matplotlib is imported inside the functions (no import-time cost).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from alflow.errors import StoreError
from alflow.report.summary import (
    CoreHours,
    LearningCurve,
    ParityData,
    UncertaintyData,
    core_hours,
    label_outcomes,
    learning_curve,
    parity_data,
    uncertainty_data,
)
from alflow.store import Store
from alflow.validation.figures import VALIDATION_FIGURES, validation_png

__all__ = [
    "FIGURES",
    "figure_png",
    "plot_core_hours",
    "plot_label_outcomes",
    "plot_learning_curve",
    "plot_parity",
    "plot_uncertainty",
    "render_figure",
    "render_validation_figure",
    "validation_figures",
]

log = logging.getLogger(__name__)

_SIZE_IN = (7.0, 4.2)


def _new_figure(size_in: tuple[float, float] = _SIZE_IN) -> Any:
    """A Figure on an Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.canvas.print_png(buffer)
    return buffer.getvalue()


def plot_learning_curve(curve: LearningCurve) -> Any:
    """Force RMSE and energy MAE vs iteration and vs number of DFT labels."""
    fig = _new_figure((8.0, 5.6))
    axes = fig.subplots(2, 2, sharex="col", squeeze=False)
    fig.suptitle("Learning curve: committee error on newly labeled frames")
    series = [
        (0, curve.force_rmse_eV_A, curve.holdout_force_rmse_eV_A, "force RMSE (eV/Å)"),
        (1, curve.energy_mae_meV_atom, curve.holdout_energy_mae_meV_atom, "energy MAE (meV/atom)"),
    ]
    xs = [(curve.iteration, "iteration"), (curve.labels_total, "DFT labels spent")]
    has_points = bool(len(curve.iteration)) and not np.all(np.isnan(curve.force_rmse_eV_A))
    for row, values, holdout, ylabel in series:
        for col, (x, xlabel) in enumerate(xs):
            ax = axes[row][col]
            if not len(curve.iteration):
                _no_data(ax, "no closed iteration yet")
                continue
            ax.plot(x, values, "o-", color="C0", label="new labels")
            if holdout is not None:
                ax.plot(x, holdout, "s--", color="C1", label="held-out set")
            if row == 1:
                ax.set_xlabel(xlabel)
            if col == 0:
                ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            _integer_ticks(ax.xaxis)
            if row == 0 and col == 1:
                note = None if curve.has_holdout or not has_points else "no held-out set in store"
                ax.legend(loc="best", fontsize="small", title=note, title_fontsize="small")
    return fig


def plot_uncertainty(data: UncertaintyData) -> Any:
    """Histogram of each iteration's max force deviation with the trust window."""
    fig = _new_figure()
    ax = fig.subplots()
    ax.set_title("Committee uncertainty of explored frames")
    if not data.max_force_dev_eV_A:
        _no_data(ax, "no explored frames yet")
        return fig
    values = np.concatenate(list(data.max_force_dev_eV_A.values()))
    windows = list(data.trust_window_eV_A.values())
    edges_max = max([float(np.nanmax(values))] + [hi for _, hi in windows])
    bins = np.linspace(0.0, edges_max * 1.05 or 1.0, 40)
    for iteration, dev in data.max_force_dev_eV_A.items():
        ax.hist(
            np.clip(dev, 0.0, bins[-1]),
            bins=bins,
            histtype="step",
            linewidth=1.5,
            label=f"iteration {iteration} ({len(dev)} frames)",
        )
    if windows:
        lo, hi = windows[-1]
        ax.axvspan(lo, hi, color="C2", alpha=0.15, label=f"trust window {lo:.3g}–{hi:.3g} eV/Å")
        for other_lo, other_hi in set(windows[:-1]) - {(lo, hi)}:
            ax.axvline(other_lo, color="C2", linestyle=":")
            ax.axvline(other_hi, color="C2", linestyle=":")
    ax.set_xlabel("max force deviation (eV/Å)")
    ax.set_ylabel("frames")
    _integer_ticks(ax.yaxis)
    ax.legend(fontsize="small")
    return fig


def plot_parity(data: ParityData) -> Any:
    """Committee force components vs DFT on newly labeled frames."""
    fig = _new_figure((5.6, 5.0))
    ax = fig.subplots()
    if not data.n_frames:
        ax.set_title("Forces: committee vs DFT")
        _no_data(ax, "no labeled frames with committee forces yet")
        return fig
    ax.set_title(
        f"Forces: committee vs DFT ({data.n_frames} frames, RMSE {data.rmse_eV_A:.3f} eV/Å)"
    )
    for iteration in np.unique(data.iteration):
        mask = data.iteration == iteration
        ax.scatter(
            data.dft_eV_A[mask],
            data.committee_eV_A[mask],
            s=6,
            alpha=0.6,
            label=f"iteration {iteration}",
        )
    limit = float(np.nanmax(np.abs(np.concatenate([data.dft_eV_A, data.committee_eV_A]))))
    limit = limit * 1.05 or 1.0
    ax.plot([-limit, limit], [-limit, limit], color="0.3", linewidth=1)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("DFT force component (eV/Å)")
    ax.set_ylabel("committee mean force component (eV/Å)")
    ax.legend(fontsize="small", markerscale=2)
    return fig


def plot_label_outcomes(outcomes: dict[int, dict[str, int]]) -> Any:
    """Labeled / failed / rejected structures per iteration (grouped bars)."""
    fig = _new_figure()
    ax = fig.subplots()
    ax.set_title("DFT labels per iteration")
    if not outcomes:
        _no_data(ax, "no structures yet")
        return fig
    iterations = np.array(sorted(outcomes))
    width = 0.27
    for i, (kind, color) in enumerate((("labeled", "C0"), ("failed", "C3"), ("rejected", "C7"))):
        counts = [outcomes[it][kind] for it in iterations]
        ax.bar(iterations + (i - 1) * width, counts, width, label=kind, color=color)
    ax.set_xticks(iterations)
    _integer_ticks(ax.yaxis)
    ax.set_xlabel("iteration")
    ax.set_ylabel("structures")
    ax.legend(fontsize="small")
    return fig


def plot_core_hours(cost: CoreHours) -> Any:
    """DFT core-hours per iteration (bars) and cumulative (line)."""
    fig = _new_figure()
    ax = fig.subplots()
    ax.set_title("DFT cost")
    if not len(cost.iteration):
        _no_data(ax, "no DFT calculations yet")
        return fig
    ax.bar(cost.iteration, cost.core_hours, color="C0", label="per iteration")
    ax.set_xticks(cost.iteration)
    ax.set_xlabel("iteration")
    ax.set_ylabel("core-hours per iteration")
    twin = ax.twinx()
    twin.plot(cost.iteration, cost.cumulative_core_hours, "o-", color="C1", label="cumulative")
    twin.set_ylabel("cumulative core-hours")
    twin.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize="small")
    if cost.n_without_timing.sum():
        ax.text(
            0.02,
            0.97,
            f"{int(cost.n_without_timing.sum())} calculations without timing not counted",
            transform=ax.transAxes,
            va="top",
            fontsize="small",
            color="0.4",
        )
    return fig


#: Figure name → (title, function drawing it from the store).
FIGURES: dict[str, tuple[str, Callable[[Store, str], Any]]] = {
    "learning-curve": (
        "Learning curve",
        lambda store, name: plot_learning_curve(learning_curve(store, name)),
    ),
    "uncertainty": (
        "Uncertainty of explored frames",
        lambda store, name: plot_uncertainty(uncertainty_data(store, name)),
    ),
    "parity": (
        "Force parity: committee vs DFT",
        lambda store, name: plot_parity(parity_data(store, name)),
    ),
    "labels": (
        "Labels, failures and rejections",
        lambda store, name: plot_label_outcomes(label_outcomes(store, name)),
    ),
    "core-hours": (
        "DFT core-hours",
        lambda store, name: plot_core_hours(core_hours(store, name)),
    ),
}


def render_figure(store: Store, campaign: str, name: str) -> bytes:
    """Draw one of :data:`FIGURES` for a campaign and return its PNG bytes.

    Raises
    ------
    KeyError
        ``name`` is not a known figure.
    """
    _, draw = FIGURES[name]
    return figure_png(draw(store, campaign))


def validation_figures(store: Store, campaign: str) -> list[tuple[str, str]]:
    """(name, title) of the validation figures; empty until ``alflow validate`` has run."""
    if store.validation(campaign) is None:
        return []
    return [(name, title) for name, (title, _) in VALIDATION_FIGURES.items()]


def render_validation_figure(store: Store, campaign: str, name: str) -> bytes:
    """Draw one validation figure from the stored validation and return its PNG bytes.

    Raises
    ------
    KeyError
        ``name`` is not a validation figure.
    StoreError
        No such campaign, or no validation yet.
    """
    doc = store.validation(campaign)
    if doc is None:
        raise StoreError(f"campaign '{campaign}' has no validation yet: run 'alflow validate'")
    return validation_png(doc, name)
