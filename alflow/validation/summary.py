"""The headline figures of a validation: a flat dict, and a readable table of it."""

from __future__ import annotations

from typing import Any

__all__ = ["format_validation", "summarize"]


def _dimer_figures(dimers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in dimers.get("pairs", []):
        name = pair["pair"]
        out[f"dimer_monotonic_{name}"] = pair["monotonic_below_data"]
        out[f"dimer_shortest_training_distance_A_{name}"] = pair["shortest_training_distance_A"]
        out[f"dimer_reference_mae_eV_{name}"] = (pair.get("reference") or {}).get("mae_eV")
    return out


def _eos_figures(eos: dict[str, Any]) -> dict[str, Any]:
    structures = eos.get("structures") or []
    if not structures:
        return {}
    first = structures[0]  # the first bulk structure; the others are in the full result
    committee, reference = first["committee"], first.get("reference") or {}
    return {
        "eos_a0_committee_A": committee.get("a0_A"),
        "eos_a0_reference_A": reference.get("a0_A"),
        "eos_a0_error_A": first.get("a0_error_A"),
        "eos_a0_ok": first.get("a0_ok"),
        "eos_b_committee_GPa": committee.get("b_GPa"),
        "eos_b_reference_GPa": reference.get("b_GPa"),
    }


def _md_figures(md: dict[str, Any]) -> dict[str, Any]:
    return {
        "md_temperature_K": md.get("temperature_K"),
        "md_simulated_ps": md.get("simulated_ps"),
        "md_steps_per_s": md.get("steps_per_s"),
        "md_stable": md.get("stable"),
        "md_closest_distance_A": md.get("closest_distance_A"),
        "md_in_window_fraction": md.get("in_window_fraction"),
    }


def _transfer_figures(transfer: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"transfer_n_atoms": transfer.get("n_atoms")}
    for row in transfer.get("temperatures", []):
        tag = f"{row['temperature_K']:g}K"
        out[f"transfer_force_rmse_eV_A_{tag}"] = row.get("force_rmse_eV_A")
        out[f"transfer_energy_mae_meV_atom_{tag}"] = row.get("energy_mae_meV_atom")
    return out


def summarize(result: dict[str, Any], references: dict[str, int]) -> dict[str, Any]:
    """The flat headline dict of a validation (what the model card shows).

    Parameters
    ----------
    result
        ``dimers``, ``eos``, ``md_stability``, ``holdout``, ``transfer``
        (a part that failed is ``{"error": ...}``).
    references
        ``computed``, ``reused``, ``failed`` reference calculations.
    """
    summary: dict[str, Any] = {}
    parts = {
        "dimers": _dimer_figures,
        "eos": _eos_figures,
        "md_stability": _md_figures,
        "holdout": lambda h: {
            "holdout_force_rmse_eV_A": h.get("force_rmse_eV_A"),
            "holdout_energy_mae_meV_atom": h.get("energy_mae_meV_atom"),
        },
        "transfer": _transfer_figures,
    }
    for name, figures in parts.items():
        part = result.get(name) or {}
        if "error" in part:
            summary[f"{name}_error"] = part["error"]
        else:
            summary.update(figures(part))
    summary.update({f"reference_{k}": v for k, v in references.items()})
    return summary


def _num(value: Any, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{format(value, spec)}{unit}"


def _yes(value: Any) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[value]


def _dimer_lines(dimers: dict[str, Any]) -> list[str]:
    lines = []
    for p in dimers.get("pairs", []):
        reference = p.get("reference") or {}
        lines.append(
            f"  {p['pair']:<8} monotonic below the data "
            f"({_num(p['shortest_training_distance_A'], '.3f', ' Å')}) down to "
            f"{dimers['dimer_min_A']:g} Å: {_yes(p['monotonic_below_data'])}; reference MAE "
            f"{_num(reference.get('mae_eV'), '.3f', ' eV')}"
            f" ({len(reference.get('distance_A', []))} points)"
        )
    return lines


def _eos_lines(eos: dict[str, Any]) -> list[str]:
    lines = []
    for s in eos.get("structures", []):
        c, r = s["committee"], s.get("reference") or {}
        lines.append(
            f"  {s['formula']:<8} a0 {_num(c.get('a0_A'), '.4f', ' Å')} (reference "
            f"{_num(r.get('a0_A'), '.4f', ' Å')}, error {_num(s.get('a0_error_A'), '+.4f', ' Å')}"
            f", within {s.get('a0_tolerance_A', 0):g} Å: {_yes(s.get('a0_ok'))}); "
            f"B {_num(c.get('b_GPa'), '.1f', ' GPa')} (reference {_num(r.get('b_GPa'), '.1f', ' GPa')})"
        )
        if c.get("error") or r.get("error"):
            lines.append(f"           fit: {c.get('error') or r.get('error')}")
    return lines


def _md_lines(md: dict[str, Any]) -> list[str]:
    return [
        f"  {md.get('temperature_K', 0):g} K, {md.get('n_atoms')} atoms: "
        f"{_num(md.get('simulated_ps'), '.2f', ' ps')} of {md.get('steps', 0)} steps, "
        f"{_num(md.get('steps_per_s'), '.1f', ' steps/s')}; stable: {_yes(md.get('stable'))}"
        + (f" ({md['stop_reason']})" if md.get("stop_reason") else ""),
        f"  closest pair {_num(md.get('closest_distance_A'), '.3f', ' Å')}, mean T of the last "
        f"half {_num(md.get('mean_temperature_last_half_K'), '.0f', ' K')}, "
        f"{_num(md.get('in_window_fraction'), '.0%')} of frames inside the trust window "
        f"(≤ {_num(md.get('trust_hi'), '.3g')})",
    ]


def _transfer_lines(transfer: dict[str, Any]) -> list[str]:
    lines = [
        f"  {transfer.get('n_atoms')} atoms (largest training frame "
        f"{transfer.get('largest_training_atoms')})"
    ]
    for row in transfer.get("temperatures", []):
        strained = row.get("strained") or {}
        deviation = (row.get("max_force_dev_eV_A") or {}).get("mean")
        lines.append(
            f"  {row['temperature_K']:g} K: force RMSE {_num(row.get('force_rmse_eV_A'), '.3f')}"
            f" eV/Å, energy MAE {_num(row.get('energy_mae_meV_atom'), '.2f')} meV/atom (mean "
            f"{_num(row.get('energy_mean_error_meV_atom'), '+.2f')}), committee deviation "
            f"{_num(deviation, '.3f')} eV/Å, {row.get('n_frames', 0)} frames"
            + (
                f"; strained {strained['strain']:+.0%}: force RMSE "
                f"{_num(strained.get('force_rmse_eV_A'), '.3f')} eV/Å"
                if strained.get("n_frames")
                else ""
            )
        )
    return lines


def format_validation(result: dict[str, Any]) -> str:
    """A readable table of a validation result (the CLI prints it)."""
    lines = [f"validation of campaign '{result.get('campaign')}' (final committee)"]
    sections = [
        ("dimers", "Dimers (E(r) − E(r_max))", _dimer_lines),
        ("eos", "E(V), Birch–Murnaghan", _eos_lines),
        ("md_stability", "MD stability (committee mean, Langevin)", _md_lines),
        ("holdout", "Held-out frames", None),
        ("transfer", "Transfer to larger cells", _transfer_lines),
    ]
    for key, title, describe in sections:
        part = result.get(key) or {}
        lines.append(title)
        if "error" in part:
            lines.append(f"  failed: {part['error']}")
        elif describe is None:
            lines.append(
                f"  force RMSE {_num(part.get('force_rmse_eV_A'), '.3f', ' eV/Å')}, energy MAE "
                f"{_num(part.get('energy_mae_meV_atom'), '.2f', ' meV/atom')} "
                f"({part.get('n_frames', 0)} frames)"
            )
        else:
            lines.extend(describe(part))
    refs = result.get("references") or {}
    lines.append(
        f"Reference calculations: {refs.get('computed', 0)} run, {refs.get('reused', 0)} reused, "
        f"{refs.get('failed', 0)} failed"
    )
    if result.get("out_dir"):
        lines.append(f"Figures and validation.json in {result['out_dir']}")
    return "\n".join(lines)
