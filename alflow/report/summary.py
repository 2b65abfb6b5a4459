"""The numbers behind a campaign's report: plain data extracted from the store.

Every function here reads the store and returns plain Python / numpy data,
so the plots (:mod:`alflow.report.plots`), the Markdown summary and the web
page share one extraction that tests can check against known numbers.

Counts per iteration come from the ``structures`` collection (so they are
live while an iteration runs); the committee's errors on the new labels come
from the ``iterations`` documents written by collect; DFT cost comes from the
``labels`` the campaign computed (``wall_s`` × ``cores``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alflow.store import Store

__all__ = [
    "HOLDOUT_KEY",
    "CoreHours",
    "LearningCurve",
    "ParityData",
    "UncertaintyData",
    "core_hours",
    "iteration_rows",
    "label_cost",
    "label_outcomes",
    "learning_curve",
    "markdown_summary",
    "parity_data",
    "uncertainty_data",
    "validation_lines",
]

log = logging.getLogger(__name__)

#: Key of an iteration document holding errors on a held-out set (same shape as ``errors``).
HOLDOUT_KEY = "holdout_errors"


def _num(value: Any) -> float:
    """A float, NaN for missing values (so arrays line up with iterations)."""
    return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class LearningCurve:
    """Committee errors per closed iteration.

    Attributes
    ----------
    iteration
        Iteration numbers (closed by collect).
    labels_total
        DFT labels spent by the campaign when the iteration closed.
    force_rmse_eV_A, energy_mae_meV_atom
        Errors of the iteration's committee on the frames newly labeled in it
        (NaN where there were none).
    n_new_labels
        Frames those errors were computed on.
    holdout_force_rmse_eV_A, holdout_energy_mae_meV_atom
        The same on a held-out set; None when the store has no held-out errors.
    """

    iteration: np.ndarray
    labels_total: np.ndarray
    force_rmse_eV_A: np.ndarray
    energy_mae_meV_atom: np.ndarray
    n_new_labels: np.ndarray
    holdout_force_rmse_eV_A: np.ndarray | None = None
    holdout_energy_mae_meV_atom: np.ndarray | None = None

    @property
    def has_holdout(self) -> bool:
        """True when at least one iteration recorded held-out errors."""
        return self.holdout_force_rmse_eV_A is not None


def learning_curve(store: Store, campaign: str) -> LearningCurve:
    """Errors on newly labeled frames (and a held-out set, if any) per iteration.

    Parameters
    ----------
    store
        The campaign's store.
    campaign
        Campaign name.

    Returns
    -------
    LearningCurve
    """
    docs = store.iteration_docs(campaign)
    errors = [d.get("errors") or {} for d in docs]
    holdout = [d.get(HOLDOUT_KEY) for d in docs]
    has_holdout = any(h for h in holdout)
    return LearningCurve(
        iteration=np.array([d["iteration"] for d in docs], dtype=int),
        labels_total=np.array([d.get("labels_spent_total") or 0 for d in docs], dtype=int),
        force_rmse_eV_A=np.array([_num(e.get("force_rmse_eV_A")) for e in errors]),
        energy_mae_meV_atom=np.array([_num(e.get("energy_mae_meV_atom")) for e in errors]),
        n_new_labels=np.array([e.get("n_frames") or 0 for e in errors], dtype=int),
        holdout_force_rmse_eV_A=(
            np.array([_num((h or {}).get("force_rmse_eV_A")) for h in holdout])
            if has_holdout
            else None
        ),
        holdout_energy_mae_meV_atom=(
            np.array([_num((h or {}).get("energy_mae_meV_atom")) for h in holdout])
            if has_holdout
            else None
        ),
    )


@dataclass(frozen=True)
class UncertaintyData:
    """The committee's max force deviation of each iteration's explored frames.

    Attributes
    ----------
    max_force_dev_eV_A
        Iteration → deviations (eV/Å) of the frames walkers saved in it.
    trust_window_eV_A
        Iteration → (lower, upper) trust window used by its selection.
    """

    max_force_dev_eV_A: dict[int, np.ndarray]
    trust_window_eV_A: dict[int, tuple[float, float]]


def uncertainty_data(store: Store, campaign: str) -> UncertaintyData:
    """Per-iteration uncertainties of walker frames, with the trust windows.

    The window of an iteration comes from its iteration document, else from
    the campaign's configuration (an iteration still running).
    """
    values: dict[int, list[float]] = {}
    for iteration, value in store.walker_uncertainties(campaign):
        values.setdefault(iteration, []).append(value)
    selection = store.campaign_selection_config(campaign)
    default = (selection.get("trust_lo_eV_A"), selection.get("trust_hi_eV_A"))
    windows: dict[int, tuple[float, float]] = {}
    by_iteration = {d["iteration"]: d for d in store.iteration_docs(campaign)}
    for iteration in sorted(values):
        doc = by_iteration.get(iteration, {})
        lo = doc.get("trust_lo_eV_A", default[0])
        hi = doc.get("trust_hi_eV_A", default[1])
        if lo is not None and hi is not None:
            windows[iteration] = (float(lo), float(hi))
    return UncertaintyData(
        max_force_dev_eV_A={k: np.asarray(values[k]) for k in sorted(values)},
        trust_window_eV_A=windows,
    )


@dataclass(frozen=True)
class ParityData:
    """Committee mean forces against DFT forces on newly labeled frames.

    Attributes
    ----------
    committee_eV_A, dft_eV_A
        Flattened force components (eV/Å), paired.
    iteration
        The iteration of each component's frame.
    n_frames
        Frames that contributed.
    """

    committee_eV_A: np.ndarray
    dft_eV_A: np.ndarray
    iteration: np.ndarray
    n_frames: int

    @property
    def rmse_eV_A(self) -> float | None:
        """Force-component RMSE of the pairs (None without pairs)."""
        if not len(self.dft_eV_A):
            return None
        return float(np.sqrt(np.mean((self.committee_eV_A - self.dft_eV_A) ** 2)))


def parity_data(store: Store, campaign: str) -> ParityData:
    """Force pairs (committee prediction, DFT) of every labeled walker frame."""
    committee, dft, iterations = [], [], []
    n_frames = 0
    for doc in store.labeled_with_committee(campaign):
        label = store.ok_label_for(doc)
        if label is None or label.get("forces_eV_A") is None:
            continue
        predicted = np.ravel(np.asarray(doc["committee"]["forces_eV_A"], dtype=float))
        reference = np.ravel(np.asarray(label["forces_eV_A"], dtype=float))
        if predicted.shape != reference.shape:
            log.warning("structure %s: committee and DFT force shapes differ", doc["key"])
            continue
        committee.append(predicted)
        dft.append(reference)
        iterations.append(np.full(predicted.shape, int(doc["iteration"])))
        n_frames += 1
    if not n_frames:
        empty = np.zeros(0)
        return ParityData(empty, empty, np.zeros(0, dtype=int), 0)
    return ParityData(
        committee_eV_A=np.concatenate(committee),
        dft_eV_A=np.concatenate(dft),
        iteration=np.concatenate(iterations),
        n_frames=n_frames,
    )


def label_outcomes(store: Store, campaign: str) -> dict[int, dict[str, int]]:
    """Per iteration: structures ``labeled`` (seeds included), ``failed`` and ``rejected``."""
    return store.label_outcome_counts(campaign)


@dataclass(frozen=True)
class CoreHours:
    """DFT cost per iteration.

    Attributes
    ----------
    iteration
        Iterations with at least one DFT calculation.
    core_hours
        Σ wall_s × cores / 3600 of the campaign's labels (failed ones and
        retries included, see :func:`label_cost`).
    cumulative_core_hours
        Running total.
    n_calculations
        Labels (DFT calculations) per iteration.
    n_without_timing
        Labels lacking ``wall_s`` or ``cores`` (not counted in the hours).
    """

    iteration: np.ndarray
    core_hours: np.ndarray
    cumulative_core_hours: np.ndarray
    n_calculations: np.ndarray
    n_without_timing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


def label_cost(label: dict[str, Any]) -> tuple[float | None, int | None]:
    """(wall seconds, cores) a label's DFT calculation cost, retries included.

    The wall time is the sum over ``attempts`` when they record it (a label's
    own ``wall_s`` is its successful attempt only), else ``wall_s``. Cores come
    from the label, else from its attempts; None when unknown.
    """
    attempts = [a for a in label.get("attempts") or [] if isinstance(a, dict)]
    timed = [float(a["wall_s"]) for a in attempts if a.get("wall_s") is not None]
    wall_s = sum(timed) if timed else label.get("wall_s")
    cores = label.get("cores")
    if cores is None:
        cores = next((a["cores"] for a in attempts if a.get("cores") is not None), None)
    return (None if wall_s is None else float(wall_s)), (None if cores is None else int(cores))


def core_hours(store: Store, campaign: str) -> CoreHours:
    """DFT core-hours spent per iteration and cumulatively."""
    hours: dict[int, float] = {}
    count: dict[int, int] = {}
    untimed: dict[int, int] = {}
    for label in store.label_costs(campaign):
        iteration = int(label.get("iteration") or 0)
        count[iteration] = count.get(iteration, 0) + 1
        hours.setdefault(iteration, 0.0)
        wall_s, cores = label_cost(label)
        if wall_s is None or cores is None:
            untimed[iteration] = untimed.get(iteration, 0) + 1
            continue
        hours[iteration] += float(wall_s) * float(cores) / 3600.0
    iterations = sorted(count)
    per = np.array([hours[i] for i in iterations])
    return CoreHours(
        iteration=np.array(iterations, dtype=int),
        core_hours=per,
        cumulative_core_hours=np.cumsum(per) if len(per) else per,
        n_calculations=np.array([count[i] for i in iterations], dtype=int),
        n_without_timing=np.array([untimed.get(i, 0) for i in iterations], dtype=int),
    )


def iteration_rows(store: Store, campaign: str) -> list[dict[str, Any]]:
    """One row per iteration (closed or running) for tables.

    Keys: ``iteration``, ``state`` (the decision, or ``running``), ``labeled``,
    ``failed``, ``rejected``, ``explored``, ``accurate_fraction``,
    ``force_rmse_eV_A``, ``energy_mae_meV_atom``, ``labels_spent_total``,
    ``trust_lo_eV_A``, ``trust_hi_eV_A``, ``core_hours``.
    """
    docs = {d["iteration"]: d for d in store.iteration_docs(campaign)}
    outcomes = label_outcomes(store, campaign)
    cost = core_hours(store, campaign)
    hours = dict(zip(cost.iteration.tolist(), cost.core_hours.tolist(), strict=True))
    rows = []
    for iteration in sorted(set(docs) | set(outcomes) | set(hours)):
        doc = docs.get(iteration, {})
        errors = doc.get("errors") or {}
        decision = doc.get("decision") or {}
        rows.append(
            {
                "iteration": int(iteration),
                "state": (decision.get("status") if doc else "running") or "closed",
                **outcomes.get(iteration, {"labeled": 0, "failed": 0, "rejected": 0}),
                "explored": doc.get("explored"),
                "accurate_fraction": doc.get("accurate_fraction"),
                "force_rmse_eV_A": errors.get("force_rmse_eV_A"),
                "energy_mae_meV_atom": errors.get("energy_mae_meV_atom"),
                "labels_spent_total": doc.get("labels_spent_total"),
                "trust_lo_eV_A": doc.get("trust_lo_eV_A"),
                "trust_hi_eV_A": doc.get("trust_hi_eV_A"),
                "core_hours": hours.get(iteration, 0.0),
            }
        )
    return rows


def _cell(value: Any, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "**no**", None: "–"}[value]
    return format(value, ".4g") if isinstance(value, float) else str(value)


def validation_lines(doc: dict[str, Any], figures: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Markdown of a stored validation: its headline figures and its figures."""
    lines = [
        "## Validation of the final committee",
        "",
        f"`alflow validate`, {doc.get('created') or doc.get('updated')} "
        "(docs/validation.md says what each figure means).",
        "",
        "| figure | value |",
        "|---|---:|",
    ]
    lines += [f"| {key} | {_value(value)} |" for key, value in (doc.get("summary") or {}).items()]
    lines.append("")
    for title, path in figures:
        lines += [f"### {title}", "", f"![{title}]({path})", ""]
    return lines


def markdown_summary(
    store: Store,
    campaign: str,
    figures: Sequence[tuple[str, str]] = (),
    validation_figures: Sequence[tuple[str, str]] = (),
) -> str:
    """A short Markdown summary: status, table per iteration, figures, validation.

    Parameters
    ----------
    store
        The campaign's store.
    campaign
        Campaign name.
    figures
        ``(title, relative path)`` of the figures to embed.
    validation_figures
        The same for the validation figures (shown when a validation is stored).
    """
    doc = store.campaign(campaign)
    curve = learning_curve(store, campaign)
    cost = core_hours(store, campaign)
    budget = doc.get("config", {}).get("loop", {}).get("max_dft_labels")
    lines = [
        f"# Campaign `{campaign}`",
        "",
        f"- status: **{doc['status']}**" + (f" ({doc['reason']})" if doc.get("reason") else ""),
        f"- DFT labels spent: {store.count_labels(campaign)}"
        + (f" of {budget}" if budget is not None else ""),
        f"- DFT core-hours: {float(cost.cumulative_core_hours[-1]) if len(cost.iteration) else 0.0:.2f}"
        + (
            f" ({int(cost.n_without_timing.sum())} calculations without timing not counted)"
            if cost.n_without_timing.sum()
            else ""
        ),
        "- held-out set: "
        + (
            "errors recorded per iteration (see the learning curve)"
            if curve.has_holdout
            else "none in this store; errors are on the newly labeled frames only"
        ),
        "",
        "| iter | state | labeled | failed | rejected | accurate | F-RMSE eV/Å | E-MAE meV/atom "
        "| window eV/Å | core-h |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in iteration_rows(store, campaign):
        window = (
            f"{row['trust_lo_eV_A']:.3f}–{row['trust_hi_eV_A']:.3f}"
            if row["trust_lo_eV_A"] is not None and row["trust_hi_eV_A"] is not None
            else "–"
        )
        lines.append(
            f"| {row['iteration']} | {row['state']} | {row['labeled']} | {row['failed']} "
            f"| {row['rejected']} | {_cell(row['accurate_fraction'], '.1%')} "
            f"| {_cell(row['force_rmse_eV_A'], '.4f')} | {_cell(row['energy_mae_meV_atom'], '.2f')} "
            f"| {window} | {row['core_hours']:.2f} |"
        )
    if figures:
        lines.append("")
        for title, path in figures:
            lines += [f"## {title}", "", f"![{title}]({path})", ""]
    validation = doc.get("validation")
    if validation:
        lines += ["", *validation_lines(validation, validation_figures)]
    return "\n".join(lines).rstrip() + "\n"
