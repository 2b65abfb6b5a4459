"""Export a campaign's final committee as a self-contained directory: the product.

:func:`export_potential` writes, into a fresh directory:

``memberMM.model``
    Each final member's MACE model, byte for byte the file in the store
    (sha256 checked on the way out).
``memberMM.model-lammps.pt``
    Its TorchScript form for LAMMPS' ``pair_style mace`` (float64), made by
    mace's own ``create_lammps_model`` (what ``python -m
    mace.cli.create_lammps_model FILE --dtype float64`` runs), for every member
    in one child process; when it cannot be made, the model card says why.
``train.xyz``
    Every label the final fit trained on, as extended XYZ with the keys
    ``mace_run_train`` reads (``REF_energy``, ``REF_forces``, ``REF_stress``),
    the isolated-atom energies first as ``config_type=IsolatedAtom`` frames.
``e0s.json``
    The E0s inside the models, ``{Z: eV}``, as ``mace_run_train --E0s`` reads it.
``model_card.json``, ``model_card.md``
    What the potential is, how it was made, how good it is, every file's sha256
    (:mod:`alflow.potential.card`).

Everything is written into a temporary sibling of the target directory and
renamed at the end, so a failure leaves nothing behind. :func:`alflow.potential.exported.load_exported`
reads such a directory back as one committee calculator, refusing a model file
whose sha256 differs from the card's.

mace and torch run only in child processes here (mace changes process-wide
torch state); :func:`alflow.potential.exported.load_exported` imports them through
:func:`alflow.committee.load_committee`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from alflow.committee.training_set import ENERGY_KEY, FORCES_KEY, STRESS_KEY, to_training_atoms
from alflow.contacts import mark_short_range
from alflow.errors import AlflowError
from alflow.potential.card import LAMMPS_DTYPE, build_card, render_markdown
from alflow.potential.compile import inspect_and_compile
from alflow.potential.load import final_record
from alflow.steps.train import training_set_fingerprint
from alflow.store import Store
from alflow.store.store import FINAL
from alflow.workcache import sha256_file

__all__ = [
    "CARD_JSON",
    "CARD_MD",
    "E0S_JSON",
    "LAMMPS_DTYPE",
    "TRAIN_XYZ",
    "ExportError",
    "ExportResult",
    "export_potential",
]

log = logging.getLogger(__name__)

CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
TRAIN_XYZ = "train.xyz"
E0S_JSON = "e0s.json"
#: Vacuum around an isolated atom in ``train.xyz`` (Å; MACE reads only its energy).
ISOLATED_BOX_A = 20.0
#: Largest relative difference between the store's isolated-atom energies and a
#: model's E0s (float32 models hold them to ~1e-7).
E0S_TOLERANCE = 1e-6


class ExportError(AlflowError):
    """The potential cannot be exported (target directory, data that changed, ...)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_potential` wrote.

    Attributes
    ----------
    directory
        The export directory (absolute).
    card_path
        Its ``model_card.md``.
    files
        File name → size in bytes, every file of the directory.
    lammps_errors
        Model file → why its LAMMPS form could not be made (empty when all were).
    """

    directory: Path
    card_path: Path
    files: dict[str, int] = field(default_factory=dict)
    lammps_errors: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- checks


def _check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse a target that is a file, or a non-empty directory without ``force``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ExportError(
            f"{out_dir} exists and is not empty: choose a new directory, or pass --force "
            "to replace it"
        )


def _final_models(store: Store, campaign: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The final fit's model records, exactly the members its record names."""
    models = store.trained_models(campaign, FINAL)
    found = [m["_id"] for m in models]
    wanted = list(record.get("members") or found)
    if sorted(found) != sorted(wanted):
        raise ExportError(
            f"the final fit of '{campaign}' names members {wanted} but the store holds "
            f"{found}: run 'alflow run CAMPAIGN.yaml' again to redo the final fit"
        )
    return models


def _training_frames(store: Store, campaign: str, record: dict[str, Any]) -> list[Atoms]:
    """The labels the final fit trained on; refuses labels that changed since."""
    frames = store.labeled_frames(campaign, record["parameters_hash"])
    digest = training_set_fingerprint([a.info["key"] for a in frames])
    if digest != record.get("training_set_sha256"):
        raise ExportError(
            f"the labels of '{campaign}' changed since its final fit ({len(frames)} labels "
            f"now, {record.get('n_labels')} then): the final fit's training set cannot be "
            "written; run 'alflow run CAMPAIGN.yaml' again to redo the final fit"
        )
    # the short-range frames' loss weight, as the final fit trained with it
    weight = store.campaign_config(campaign).initial.short_range.loss_weight
    mark_short_range(frames, weight)
    return frames


# --------------------------------------------------------------------------- files


def _fetch_members(store: Store, models: Sequence[dict[str, Any]], staging: Path) -> list[Path]:
    """Each member's model file as ``memberMM.model`` (sha256 checked by the store)."""
    fetched = staging / ".fetch"
    paths = []
    for model in models:
        path = store.fetch_model(model["_id"], fetched)
        target = staging / f"member{int(model['member']):02d}.model"
        os.replace(path, target)
        paths.append(target)
    shutil.rmtree(fetched, ignore_errors=True)
    return paths


def _e0s(
    store: Store, record: dict[str, Any], infos: Sequence[dict[str, Any]]
) -> tuple[dict[str, float], str]:
    """The models' E0s by symbol and where they come from.

    ``isolated-atom`` when they are the reference method's isolated-atom
    energies in the store (then ``train.xyz`` carries them as IsolatedAtom
    frames); otherwise MACE's own (e.g. least-squares ``average``) values.
    """
    tables = [
        {chemical_symbols[int(z)]: e for z, e in sorted(info["e0s_eV"].items(), key=_by_z)}
        for info in infos
    ]
    if any(t.keys() != tables[0].keys() for t in tables):
        raise ExportError("the final members have different element tables")
    reference = store.reference_energies(record["parameters_hash"])
    isolated = all(
        symbol in reference
        and abs(reference[symbol] - energy) <= E0S_TOLERANCE * (1.0 + abs(energy))
        for table in tables
        for symbol, energy in table.items()
    )
    by_symbol = {s: reference[s] for s in tables[0]} if isolated else tables[0]
    return by_symbol, "isolated-atom" if isolated else "model"


def _by_z(item: tuple[str, float]) -> int:
    return int(item[0])


def _isolated_atoms(e0s_eV: dict[str, float]) -> list[Atoms]:
    """One ``config_type=IsolatedAtom`` frame per element, as MACE reads E0s."""
    frames = []
    for symbol, energy in e0s_eV.items():
        atoms = Atoms(symbol, cell=[ISOLATED_BOX_A] * 3, pbc=False)
        atoms.center()
        atoms.info["config_type"] = "IsolatedAtom"
        atoms.info[ENERGY_KEY] = float(energy)
        atoms.arrays[FORCES_KEY] = np.zeros((1, 3))
        frames.append(atoms)
    return frames


def write_training_set(
    path: Path, frames: Sequence[Atoms], e0s_eV: dict[str, float], isolated: bool
) -> dict[str, Any]:
    """``train.xyz``: (IsolatedAtom frames, then) every label with MACE's REF_* keys.

    Returns
    -------
    dict
        Counts and key names for the model card.
    """
    from ase.io import write

    labeled = []
    for atoms in frames:
        plain = to_training_atoms(atoms)
        plain.info.setdefault("config_type", "Default")  # (MACE's default; kept if set)
        plain.info["alflow_key"] = atoms.info["key"]
        plain.info["alflow_iteration"] = int(atoms.info["iteration"])
        labeled.append(plain)
    isolated_frames = _isolated_atoms(e0s_eV) if isolated else []
    write(path, [*isolated_frames, *labeled], format="extxyz")
    return {
        "file": path.name,
        "n_labels": len(labeled),
        "n_isolated_atoms": len(isolated_frames),
        "n_with_stress": sum(STRESS_KEY in a.info for a in labeled),
        "energy_key": ENERGY_KEY,
        "forces_key": FORCES_KEY,
        "stress_key": STRESS_KEY,
        "elements": sorted({s for a in labeled for s in a.get_chemical_symbols()}),
    }


def _write_e0s(path: Path, e0s_eV: dict[str, float]) -> None:
    by_z = {str(atomic_numbers[s]): e for s, e in e0s_eV.items()}
    path.write_text(json.dumps(by_z, indent=2) + "\n")


# --------------------------------------------------------------------------- export


def _write_export(
    store: Store,
    campaign: str,
    record: dict[str, Any],
    models: Sequence[dict[str, Any]],
    frames: Sequence[Atoms],
    staging: Path,
    lammps: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write every file into ``staging``; return the card and the LAMMPS failures."""
    paths = _fetch_members(store, models, staging)
    infos = inspect_and_compile(paths, lammps)
    e0s_eV, e0s_source = _e0s(store, record, infos)
    data = write_training_set(staging / TRAIN_XYZ, frames, e0s_eV, e0s_source == "isolated-atom")
    _write_e0s(staging / E0S_JSON, e0s_eV)
    card = build_card(
        store,
        campaign,
        record,
        models=models,
        model_files=[p.name for p in paths],
        model_infos=infos,
        training_data=data,
        e0s={"file": E0S_JSON, "source": e0s_source, "eV": e0s_eV},
        files=_file_table(staging),
    )
    card = json.loads(json.dumps(card, default=_json_default))  # what the file will hold
    (staging / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    (staging / CARD_MD).write_text(render_markdown(card))
    errors = {p.name: i["lammps_error"] for p, i in zip(paths, infos, strict=True)}
    return card, {name: error for name, error in errors.items() if error}


def _file_table(directory: Path) -> dict[str, dict[str, Any]]:
    """``{name: {sha256, size_bytes}}`` of the files in ``directory``, by name."""
    return {
        p.name: {"sha256": sha256_file(p), "size_bytes": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` to ``out_dir``; a directory already there is replaced."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.replaced-{os.getpid()}")
        os.replace(out_dir, old)
    try:
        os.replace(staging, out_dir)
    except OSError:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_potential(
    store: Store,
    campaign: str,
    out_dir: str | Path,
    *,
    force: bool = False,
    lammps: bool = True,
) -> ExportResult:
    """Write the final committee of ``campaign``, its data and its model card to ``out_dir``.

    Parameters
    ----------
    store
        The open store.
    campaign
        The campaign whose final fit is exported.
    out_dir
        Target directory; created (with its parents). Written in full or not at all.
    force
        Replace an existing non-empty ``out_dir``.
    lammps
        Make each member's LAMMPS form (``memberMM.model-lammps.pt``).

    Returns
    -------
    ExportResult

    Raises
    ------
    StoreError
        Unknown campaign, or no (trained) final fit: the message says how to run one.
    ExportError
        ``out_dir`` is a file, or not empty without ``force``; the final fit's
        members or labels are no longer in the store as it recorded them.
    TrainingError
        A model in the store is corrupt or tampered with (sha256 mismatch).
    """
    out = Path(out_dir).expanduser().resolve()
    record = final_record(store, campaign)
    _check_out_dir(out, force)
    models = _final_models(store, campaign, record)
    frames = _training_frames(store, campaign, record)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()  # (the umask's permissions, unlike mkdtemp's 0700)
    try:
        card, lammps_errors = _write_export(
            store, campaign, record, models, frames, staging, lammps
        )
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {name: entry["size_bytes"] for name, entry in card["files"].items()}
    for name in (CARD_JSON, CARD_MD):
        files[name] = (out / name).stat().st_size
    log.info("exported the final committee of '%s' to %s", campaign, out)
    return ExportResult(out, out / CARD_MD, files, lammps_errors)
