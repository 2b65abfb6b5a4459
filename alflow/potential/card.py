"""The model card of an exported potential: what it is, how it was made, how good it is.

:func:`build_card` gathers, from the store and the exported files, a JSON-able
dict (``model_card.json``); :func:`render_markdown` writes the short human
version (``model_card.md``). Fields (see docs/potential.md):

- ``format``, ``campaign``, ``description``, ``exported``;
- ``potential``: elements, ``r_max_A``, members, heads, dtype, model class;
- ``hyperparameters``: the MACE architecture and training settings, mace version;
- ``members``: per member its file, sha256, LAMMPS form (or why none), seed,
  validation-split errors and every other field of its store record;
- ``training_data``: ``train.xyz``, number of labels, the training-set
  fingerprint (sha256 of the sorted structure keys), key names;
- ``e0s``: the isolated-atom energies by element and where they come from;
- ``reference_method``: code, parameters and parameters hash of the labels;
- ``holdout_errors`` (final fit), ``validation`` (``alflow validate``'s summary);
- ``trust_window``: the last iteration's calibrated trust window;
- ``repulsion``: the ZBL repulsive prior, when recorded;
- ``final_fit``: epochs, last iteration, status; ``versions``; ``files`` (sha256, size).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from alflow.errors import AlflowError
from alflow.labeling import make_labeler
from alflow.settings import Settings
from alflow.store import Store

__all__ = ["CARD_FORMAT", "build_card", "format_size", "package_versions", "render_markdown"]

#: ``format`` of model_card.json; bumped when a field changes meaning.
CARD_FORMAT = "alflow-potential/1"
#: dtype of the LAMMPS form (mace's default; LAMMPS runs MACE in double precision).
LAMMPS_DTYPE = "float64"
_PACKAGES = ("alflow", "mace-torch", "torch", "e3nn", "ase", "numpy", "gpaw")
#: Store fields of a model record that say nothing about the model itself.
_STORE_FIELDS = ("_id", "file_id", "campaign", "iteration", "status")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that make and run the potential (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def _reference_method(store: Store, campaign: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Code, parameters and parameters hash of the labels the committee was fitted to."""
    oracle = store.campaign_config(campaign).labeling.oracle
    method: dict[str, Any] = {
        "code": oracle.code,
        "parameters": oracle.model_dump(mode="json"),
        "parameters_hash": record["parameters_hash"],
    }
    try:
        labeler = make_labeler(oracle, Settings())
        method["parameters"] = labeler.parameters()
        if labeler.parameters_hash() != record["parameters_hash"]:
            method["note"] = "the campaign's labeler now hashes differently: labels are older"
    except (AlflowError, ValueError, TypeError) as exc:
        method["note"] = f"labeler not available here ({exc})"
    return method


def _trust_window(store: Store, campaign: str) -> dict[str, Any] | None:
    """The last iteration's trust window (eV/Å) and whether it was calibrated."""
    docs = [d for d in store.iteration_docs(campaign) if d.get("trust_lo_eV_A") is not None]
    if not docs:
        return None
    last = docs[-1]
    return {
        "trust_lo_eV_A": last.get("trust_lo_eV_A"),
        "trust_hi_eV_A": last.get("trust_hi_eV_A"),
        "trust_source": last.get("trust_source"),
        "iteration": last.get("iteration"),
    }


def _validation(store: Store, campaign: str) -> dict[str, Any] | None:
    """``alflow validate``'s summary and when it ran, None if it has not."""
    doc = store.validation(campaign)
    if doc is None:
        return None
    return {"summary": doc.get("summary"), "updated": doc.get("updated")}


def _member_entry(
    model: Mapping[str, Any],
    file_name: str,
    info: Mapping[str, Any],
    files: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """One member: its files and hashes, then every field of its store record."""
    lammps_file, lammps_error = info.get("lammps_file"), info.get("lammps_error")
    entry: dict[str, Any] = {
        "id": model["_id"],
        "member": model["member"],
        "file": file_name,
        "sha256": files[file_name]["sha256"],
        "store_sha256": model.get("sha256"),
        "lammps": {"file": lammps_file, "dtype": LAMMPS_DTYPE}
        if lammps_file
        else {"file": None, "error": lammps_error},
        "n_parameters": info.get("n_parameters"),
    }
    entry.update({k: v for k, v in model.items() if k not in (*_STORE_FIELDS, *entry)})
    return entry


def _potential(
    models: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """What every member shares: elements, cutoff, heads, dtype."""
    from ase.data import chemical_symbols

    first = infos[0]
    training = (models[0].get("hyperparameters") or {}).get("training") or {}
    return {
        "kind": "MACE committee",
        "model_class": first.get("model_class"),
        "n_members": len(models),
        "elements": [chemical_symbols[z] for z in first["atomic_numbers"]],
        "atomic_numbers": first["atomic_numbers"],
        "r_max_A": first["r_max_A"],
        "heads": first.get("heads"),
        "dtype": training.get("dtype") or first.get("dtype"),
        "pair_repulsion": first.get("pair_repulsion"),
    }


def _hyperparameters(models: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    hyper = models[0].get("hyperparameters") or {}
    keys = ("model", "training", "mace_version", "foundation")  # foundation: file, sha256, card
    return {k: hyper.get(k) for k in keys if k in hyper}


def build_card(
    store: Store,
    campaign: str,
    record: Mapping[str, Any],
    *,
    models: Sequence[Mapping[str, Any]],
    model_files: Sequence[str],
    model_infos: Sequence[Mapping[str, Any]],
    training_data: Mapping[str, Any],
    e0s: Mapping[str, Any],
    files: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The model card of an export (JSON-able but for datetimes).

    Parameters
    ----------
    store, campaign, record
        The store, the campaign and its final-fit record (``campaigns.final``).
    models
        The final members' store records, in member order.
    model_files, model_infos
        Per member: exported file name, and what
        :func:`alflow.potential.export.inspect_and_compile` read from it (with
        its LAMMPS file name, or why there is none).
    training_data, e0s
        What ``train.xyz`` and ``e0s.json`` hold.
    files
        ``{name: {sha256, size_bytes}}`` of every exported file but the card.
    """
    doc = store.campaign(campaign)
    members = [
        _member_entry(m, f, i, files)
        for m, f, i in zip(models, model_files, model_infos, strict=True)
    ]
    return {
        "format": CARD_FORMAT,
        "campaign": campaign,
        "description": doc.get("config", {}).get("description", ""),
        "campaign_status": doc.get("status"),
        "campaign_reason": doc.get("reason"),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "potential": _potential(models, model_infos),
        "hyperparameters": _hyperparameters(models),
        "members": members,
        "training_data": {
            **training_data,
            "training_set_sha256": record.get("training_set_sha256"),
        },
        "e0s": dict(e0s),
        "reference_method": _reference_method(store, campaign, record),
        "holdout_errors": record.get("holdout_errors"),
        "validation": _validation(store, campaign),
        "trust_window": _trust_window(store, campaign),
        "repulsion": models[0].get("repulsion"),
        "final_fit": {
            k: record.get(k) for k in ("status", "epochs", "last_iteration", "n_labels", "updated")
        },
        "versions": package_versions(),
        "files": dict(files),
    }


# --------------------------------------------------------------------------- markdown


def _fmt(value: Any, spec: str = ".4g", unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:{spec}}{unit}"
    return f"{value}{unit}"


def format_size(n_bytes: int) -> str:
    """A file size for people: ``315.8 kB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return str(n_bytes)


def _facts(card: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rows of the card's summary table."""
    pot, hyper = card["potential"], card.get("hyperparameters", {})
    model = hyper.get("model") or {}
    data, e0s, ref = card["training_data"], card["e0s"], card["reference_method"]
    trust, final = card.get("trust_window"), card.get("final_fit") or {}
    arch = ", ".join(f"{k} {v}" for k, v in model.items()) or "n/a"
    e0s_text = ", ".join(f"{s} {e:.6f} eV" for s, e in e0s["eV"].items())
    rows = [
        ("elements", ", ".join(pot["elements"])),
        ("cutoff r_max", _fmt(pot["r_max_A"], ".3g", " Å")),
        ("committee", f"{pot['n_members']} × {pot.get('model_class')} ({arch})"),
        ("dtype", str(pot.get("dtype"))),
        ("ZBL repulsive prior", _repulsion_text(card)),
        (
            "training data",
            f"{data['n_labels']} labels in `{data['file']}` "
            f"(fingerprint `{str(data.get('training_set_sha256'))[:16]}…`)",
        ),
        ("reference method", f"{ref['code']}, parameters hash `{ref['parameters_hash'][:16]}…`"),
        ("E0s", f"{e0s_text} ({e0s['source']})"),
        (
            "final fit",
            f"{final.get('epochs')} epochs after iteration {final.get('last_iteration')}",
        ),
    ]
    if trust:
        window = f"{_fmt(trust['trust_lo_eV_A'], '.3g')}–{_fmt(trust['trust_hi_eV_A'], '.3g')}"
        rows.append(
            (
                "trust window",
                f"{window} eV/Å ({trust.get('trust_source') or 'fixed'}, "
                f"iteration {trust.get('iteration')})",
            )
        )
    return rows


def _repulsion_text(card: Mapping[str, Any]) -> str:
    """``ZBL, switched off at Cu-Cu 2.28 Å`` from the recorded prior."""
    repulsion = card.get("repulsion")
    if not isinstance(repulsion, Mapping):
        return "in the models" if card["potential"].get("pair_repulsion") else "none recorded"
    kind = str(repulsion.get("kind") or "pair repulsion").upper()
    inner = repulsion.get("inner_radius_A")
    if isinstance(inner, Mapping) and inner:
        pairs = ", ".join(f"{pair} {_fmt(r, '.3g', ' Å')}" for pair, r in inner.items())
        return f"{kind}, switched off at {pairs}"
    return _inline(repulsion)


def _error_lines(card: Mapping[str, Any]) -> list[str]:
    """Held-out, validation and per-member validation-split errors."""
    lines = []
    holdout = card.get("holdout_errors") or {}
    if holdout.get("n_frames"):
        lines.append(
            f"- held-out set ({holdout['n_frames']} frames, never trained on): force RMSE "
            f"{_fmt(holdout.get('force_rmse_eV_A'), '.4f', ' eV/Å')}, energy MAE "
            f"{_fmt(holdout.get('energy_mae_meV_atom'), '.3g', ' meV/atom')}"
        )
    else:
        lines.append("- held-out set: none labeled")
    summary = (card.get("validation") or {}).get("summary")
    if isinstance(summary, Mapping) and summary:
        lines.append("- validation (`alflow validate`): " + _inline(summary))
    else:
        lines.append("- validation: not run (`alflow validate`)")
    for member in card["members"]:
        lines.append(
            f"- `{member['file']}` on its validation split: force RMSE "
            f"{_fmt(member.get('valid_rmse_forces_meV_A'), '.3g', ' meV/Å')}, energy RMSE "
            f"{_fmt(member.get('valid_rmse_energy_meV_atom'), '.3g', ' meV/atom')}"
        )
    return lines


def _inline(mapping: Mapping[str, Any]) -> str:
    parts = []
    for key, value in mapping.items():
        text = _inline(value) if isinstance(value, Mapping) else _fmt(value)
        parts.append(f"{key} {text}" if not isinstance(value, Mapping) else f"{key} ({text})")
    return ", ".join(parts)


def _load_snippet(card: Mapping[str, Any]) -> list[str]:
    models = ", ".join(f'"{m["file"]}"' for m in card["members"])
    lammps = next((m["lammps"]["file"] for m in card["members"] if m["lammps"]["file"]), None)
    lines = [
        "```python",
        "from mace.calculators import MACECalculator",
        f'calc = MACECalculator(model_paths=[{models}], device="cpu", default_dtype="float64")',
        "",
        "from alflow.potential import load_exported  # sha256-checked; committee mean and spread",
        'calc = load_exported(".")  # calc.results["forces_std"]: per-atom force deviation (eV/Å)',
        "```",
    ]
    if lammps:
        elements = " ".join(card["potential"]["elements"])
        lines += [
            "",
            "LAMMPS (one member; `pair_style mace` needs LAMMPS built with MACE):",
            "",
            "```",
            "pair_style mace no_domain_decomposition",
            f"pair_coeff * * {lammps} {elements}",
            "```",
        ]
    return lines


def render_markdown(card: Mapping[str, Any]) -> str:
    """``model_card.md``: the card's essentials, its files and how to load them."""
    lines = [f"# {card['campaign']}: {card['potential']['kind']}", ""]
    if card.get("description"):
        lines += [card["description"], ""]
    lines += ["| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _facts(card)]
    lines += ["", "## Errors", "", *_error_lines(card), "", "## How to load", ""]
    lines += _load_snippet(card)
    lines += ["", "## Files", "", "| file | size | sha256 |", "| --- | ---: | --- |"]
    lines += [
        f"| `{name}` | {format_size(entry['size_bytes'])} | `{entry['sha256']}` |"
        for name, entry in card["files"].items()
    ]
    missing = [m for m in card["members"] if not m["lammps"]["file"]]
    for member in missing:
        lines.append(f"\nNo LAMMPS form of `{member['file']}`: {member['lammps']['error']}")
    versions = ", ".join(f"{k} {v}" for k, v in card["versions"].items() if v)
    lines += ["", "## Versions", "", f"Exported {card['exported']} with {versions}.", ""]
    lines.append("Every field: `model_card.json` (docs/potential.md).")
    return "\n".join(lines) + "\n"
