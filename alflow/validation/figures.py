"""Figures of a validation, drawn from its stored result (matplotlib's Agg canvas).

Each ``plot_*`` takes the validation document (what :func:`~alflow.validation.
validate_potential` returns and the store keeps) and returns a Figure on an
Agg canvas; no pyplot, no global backend, matplotlib imported inside. The
report and the web GUI draw the same figures from ``store.validation(...)``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "VALIDATION_FIGURES",
    "plot_dimers",
    "plot_eos",
    "plot_md",
    "plot_transfer",
    "validation_png",
    "write_figures",
]

log = logging.getLogger(__name__)


def _figure(size_in: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(n: int) -> tuple[Any, list[Any]]:
    """A figure with ``n`` panels (at least one), three per row."""
    columns = max(1, min(n, 3))
    rows = max(1, -(-n // 3))
    fig = _figure((5.6 * columns, 4.2 * rows))
    axes = list(fig.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[max(n, 1) :]:
        ax.set_visible(False)
    return fig, axes


def _array(values: Any) -> np.ndarray:
    """Floats with None as NaN."""
    return np.array([np.nan if v is None else v for v in (values or [])], dtype=float)


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_dimers(doc: dict[str, Any]) -> Any:
    """Committee dimer curves (mean ± spread) with reference points and the data's shortest pair."""
    pairs = (doc.get("dimers") or {}).get("pairs") or []
    fig, axes = _panels(len(pairs))
    if not pairs:
        _no_data(axes[0], "no dimer curves")
        return fig
    for ax, pair in zip(axes, pairs, strict=False):
        r, e, s = (_array(pair[k]) for k in ("distance_A", "energy_eV", "energy_std_eV"))
        ax.plot(r, e, "-", color="C0", label="committee mean")
        ax.fill_between(r, e - s, e + s, color="C0", alpha=0.25, label="± committee spread")
        reference = pair.get("reference") or {}
        if reference.get("distance_A"):
            ax.plot(
                _array(reference["distance_A"]),
                _array(reference["energy_eV"]),
                "s",
                color="C1",
                label="reference method",
            )
        shortest = pair.get("shortest_training_distance_A")
        if shortest is not None:
            ax.axvline(
                shortest, color="C2", linestyle="--", label=f"shortest in data {shortest:.2f} Å"
            )
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_yscale("symlog", linthresh=1.0)
        verdict = {True: "rises below the data", False: "NOT monotonic", None: "no data"}
        ax.set_title(f"{pair['pair']} dimer: {verdict[pair['monotonic_below_data']]}")
        ax.set_xlabel("distance (Å)")
        ax.set_ylabel("E(r) − E(r_max) (eV, symlog)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def plot_eos(doc: dict[str, Any]) -> Any:
    """E(V) per atom of each bulk structure: committee and reference, with their a0."""
    structures = (doc.get("eos") or {}).get("structures") or []
    fig, axes = _panels(len(structures))
    if not structures:
        _no_data(axes[0], "no 3D-periodic initial structure")
        return fig
    for ax, item in zip(axes, structures, strict=False):
        n = item["n_atoms"]
        committee, reference = item["committee"], item.get("reference") or {}
        zero = np.nanmin(_array(committee["energy_eV"])) / n
        for data, style, color, name in (
            (committee, "o-", "C0", "committee"),
            (reference, "s--", "C1", "reference"),
        ):
            if not data.get("volume_A3"):
                continue
            a0 = data.get("a0_A")
            label = f"{name}: a0 {a0:.4f} Å, B {data['b_GPa']:.0f} GPa" if a0 else name
            volume = _array(data["volume_A3"]) / n
            energy = 1000.0 * (_array(data["energy_eV"]) / n - zero)
            ax.plot(volume, energy, style, color=color, label=label)
            if data.get("v0_A3"):
                ax.axvline(data["v0_A3"] / n, color=color, linestyle=":", linewidth=1)
        ax.set_title(f"E(V) of {item['formula']}")
        ax.set_xlabel("volume per atom (Å³)")
        ax.set_ylabel("energy per atom (meV, committee minimum = 0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def plot_md(doc: dict[str, Any]) -> Any:
    """Temperature and committee deviation along the stability run."""
    md = doc.get("md_stability") or {}
    trace = md.get("trace") or {}
    fig = _figure((7.0, 5.0))
    top, bottom = fig.subplots(2, 1, sharex=True)
    if not trace.get("time_ps"):
        _no_data(top, md.get("stop_reason") or "no stability run")
        return fig
    time_ps = _array(trace["time_ps"])
    top.plot(time_ps, _array(trace["temperature_K"]), color="C3", linewidth=1)
    top.axhline(
        md["temperature_K"], color="0.3", linestyle="--", label=f"target {md['temperature_K']:g} K"
    )
    top.set_ylabel("temperature (K)")
    top.set_title(
        f"Stability MD, {md.get('n_atoms')} atoms: "
        + (
            "stable"
            if md.get("stable")
            else f"NOT stable ({md.get('stop_reason') or 'see figures'})"
        )
    )
    top.legend(fontsize="small")
    bottom.plot(time_ps, _array(trace["max_force_dev_eV_A"]), color="C0", linewidth=1)
    if md.get("trust_hi") is not None:
        bottom.axhline(
            md["trust_hi"], color="C2", linestyle="--", label=f"trust_hi {md['trust_hi']:.3g}"
        )
        bottom.legend(fontsize="small")
    bottom.set_xlabel("time (ps)")
    bottom.set_ylabel("max force deviation (eV/Å)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig


def plot_transfer(doc: dict[str, Any]) -> Any:
    """Force RMSE against the reference and the committee's own deviation, per temperature."""
    transfer = doc.get("transfer") or {}
    rows = [r for r in transfer.get("temperatures") or [] if r.get("n_frames")]
    fig = _figure((6.0, 4.0))
    ax = fig.subplots()
    if not rows:
        _no_data(ax, transfer.get("note") or "no transfer frames")
        return fig
    x = np.arange(len(rows))
    rmse = _array([r["force_rmse_eV_A"] for r in rows])
    deviation = _array([(r.get("max_force_dev_eV_A") or {}).get("mean") for r in rows])
    strained = _array([(r.get("strained") or {}).get("force_rmse_eV_A") for r in rows])
    ax.bar(x - 0.27, rmse, 0.27, label="force RMSE vs reference", color="C0")
    ax.bar(x, strained, 0.27, label="force RMSE, strained frame", color="C4")
    ax.bar(x + 0.27, deviation, 0.27, label="committee max force deviation (mean)", color="C1")
    ax.set_xticks(x, [f"{r['temperature_K']:g} K" for r in rows])
    ax.set_ylabel("eV/Å")
    ax.set_title(f"Transfer to {transfer.get('n_atoms')} atoms")
    ax.legend(fontsize="small")
    return fig


#: Figure name → (title, drawing function of a validation document).
VALIDATION_FIGURES: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "validation-dimers": ("Validation: dimer curves", plot_dimers),
    "validation-eos": ("Validation: E(V)", plot_eos),
    "validation-md": ("Validation: MD stability", plot_md),
    "validation-transfer": ("Validation: transfer to larger cells", plot_transfer),
}


def validation_png(doc: dict[str, Any], name: str) -> bytes:
    """One of :data:`VALIDATION_FIGURES` as PNG bytes (KeyError for an unknown name)."""
    _, draw = VALIDATION_FIGURES[name]
    buffer = io.BytesIO()
    draw(doc).canvas.print_png(buffer)
    return buffer.getvalue()


def write_figures(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every validation figure as ``<name>.png`` into ``out_dir``."""
    written = []
    for name in VALIDATION_FIGURES:
        path = Path(out_dir) / f"{name}.png"
        path.write_bytes(validation_png(doc, name))
        written.append(path)
    return written
