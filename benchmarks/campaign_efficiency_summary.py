"""Curves, labels to target and the figure of benchmarks/campaign_efficiency.py.

Pure functions over the benchmark's runs (one per campaign: ``method``,
``seed`` and ``curve``, the test force RMSE of each iteration's committee
against the labels it was trained on); no campaign is run here.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "METHODS",
    "labels_to_target",
    "labels_to_target_interpolated",
    "plot_curves",
    "summarize",
]

#: The two selection methods compared, in the order of the figures.
METHODS = ("random", "alflow")


def _count(value: float) -> int | float:
    """A label count: an int where the seeds agree on it, else the mean."""
    value = float(value)
    return round(value) if abs(value - round(value)) < 1e-9 else value


def labels_to_target(curve: list[dict[str, float]], target: float) -> int | float | None:
    """Labels at the first point of a curve at or below ``target`` (None: never)."""
    for point in curve:
        if point["force_rmse_eV_A"] <= target + 1e-12:
            return _count(point["labels"])
    return None


def labels_to_target_interpolated(curve: list[dict[str, float]], target: float) -> float | None:
    """Where a curve first crosses ``target``, log(RMSE) interpolated linearly in labels."""
    if curve and curve[0]["force_rmse_eV_A"] <= target:
        return float(curve[0]["labels"])
    for before, after in itertools.pairwise(curve):
        hi, lo = before["force_rmse_eV_A"], after["force_rmse_eV_A"]
        if lo <= target < hi:
            share = (np.log(hi) - np.log(target)) / (np.log(hi) - np.log(lo))
            return float(before["labels"] + share * (after["labels"] - before["labels"]))
    return None


def _method_curves(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Seed mean and std of one method's curves, point by point (iteration 0, 1, ..., final)."""
    length = min(len(r["curve"]) for r in runs)
    points = [[r["curve"][k] for r in runs] for k in range(length)]
    out: dict[str, Any] = {
        "iteration": [p[0]["iteration"] for p in points],
        "labels": [_count(float(np.mean([q["labels"] for q in p]))) for p in points],
        "labels_per_seed": [[q["labels"] for q in p] for p in points],
        "seeds": [r["seed"] for r in runs],
    }
    for key in ("force_rmse", "force_rmse_inside", "force_rmse_beyond"):
        if all(f"{key}_eV_A" in q for p in points for q in p):
            values = np.array([[q[f"{key}_eV_A"] for q in p] for p in points])
            out[f"{key}_mean_eV_A"] = values.mean(axis=1).tolist()
            out[f"{key}_std_eV_A"] = values.std(axis=1).tolist()
    out["force_rmse_per_seed_eV_A"] = [[q["force_rmse_eV_A"] for q in p] for p in points]
    return out


def _ratio(counts: dict[str, Any]) -> float | None:
    """alflow's count over random's; None unless both reached the target (and random > 0)."""
    alflow, random = counts.get("alflow"), counts.get("random")
    return None if alflow is None or not random else alflow / random


def summarize(runs: list[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """Seed-averaged curves per method, the target and the labels each method needs.

    Parameters
    ----------
    runs
        One entry per campaign: ``method``, ``seed`` and ``curve`` (points with
        ``labels`` and ``force_rmse_eV_A``, optionally ``force_rmse_inside_eV_A``
        and ``force_rmse_beyond_eV_A``).
    target
        Target force RMSE (eV/Å); None: random's seed-averaged RMSE at its last point.

    Returns
    -------
    dict
        ``curves``, ``target_force_rmse_eV_A``, ``target_source``,
        ``labels_to_target`` (labels of the training set, the seed set included),
        ``labels_to_target_interpolated``, ``seed_labels`` (the first point's labels:
        the seed set, shared by both methods), ``selected_labels_to_target``
        (labels chosen by selection: ``labels_to_target - seed_labels``) and
        the ratios alflow / random of both (None unless both reach the target).
    """
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    curves = {m: _method_curves([r for r in runs if r["method"] == m]) for m in methods}
    source = "--target"
    if target is None and "random" in curves:
        target = curves["random"]["force_rmse_mean_eV_A"][-1]
        source = "random's seed-averaged test RMSE at its last point (its final fit)"
    mean_points = {
        m: [
            {"labels": n, "force_rmse_eV_A": r}
            for n, r in zip(c["labels"], c["force_rmse_mean_eV_A"], strict=True)
        ]
        for m, c in curves.items()
    }
    reached = {
        m: None if target is None else labels_to_target(p, target) for m, p in mean_points.items()
    }
    interpolated = {
        m: None if target is None else labels_to_target_interpolated(p, target)
        for m, p in mean_points.items()
    }
    seed_labels = min(c["labels"][0] for c in curves.values())
    selected = {m: None if n is None else n - seed_labels for m, n in reached.items()}
    ratio = _ratio(reached)
    ratio_selected = _ratio(selected)
    return {
        "target_force_rmse_eV_A": target,
        "target_source": source,
        "labels_to_target": reached,
        "labels_to_target_interpolated": interpolated,
        "ratio_alflow_vs_random": ratio,
        "seed_labels": seed_labels,
        "selected_labels_to_target": selected,
        "ratio_selected_alflow_vs_random": ratio_selected,
        "goal_ratio": 0.5,
        "goal_met": None if ratio is None else bool(ratio <= 0.5),
        "goal_met_selected": None if ratio_selected is None else bool(ratio_selected <= 0.5),
        "curves": curves,
    }


def plot_curves(summary: dict[str, Any], path: Path, title: str) -> None:
    """Test force RMSE against labels per method (mean ± std over seeds), all and by region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colors = {"random": "tab:blue", "alflow": "tab:orange"}
    for method, curve in summary["curves"].items():
        labels = np.array(curve["labels"], dtype=float)
        mean = np.array(curve["force_rmse_mean_eV_A"])
        std = np.array(curve["force_rmse_std_eV_A"])
        axes[0].plot(labels, mean, "o-", color=colors[method], label=method)
        axes[0].fill_between(labels, mean - std, mean + std, color=colors[method], alpha=0.15)
        for region, style in (("inside", "o-"), ("beyond", "s--")):
            key = f"force_rmse_{region}_mean_eV_A"
            if key in curve:
                axes[1].plot(
                    labels, curve[key], style, color=colors[method], label=f"{method}, {region}"
                )
    if summary["target_force_rmse_eV_A"] is not None:
        axes[0].axhline(summary["target_force_rmse_eV_A"], color="k", ls=":", lw=1, label="target")
    axes[0].set_title("all test frames (mean ± std over seeds)", fontsize=9)
    axes[1].set_title("inside: ≤ 900 K, |strain| ≤ 2 %; beyond: 1500 K or 4 %", fontsize=9)
    for ax in axes:
        ax.set_xlabel("EMT labels the committee was trained on (seed set included)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test force RMSE of the committee mean (eV/Å)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
