"""Transfer: errors on cells larger than any the committee was trained on.

The largest initial cell is repeated to at least ``transfer_min_atoms`` and
more atoms than the largest training frame. At each campaign temperature,
committee-mean MD (seeded: ``validation.seed`` + 1 + the temperature's
index) equilibrates for ``transfer_equilibration_ps`` and then gives
``transfer_frames`` frames ``transfer_spacing_ps`` apart; the last one is
also stretched by ``transfer_strain``. The reference method labels them, and
the committee's errors and its own deviation on them are reported per
temperature.

The frames are stored as structures of status ``validation`` (never trained
on) with their labels, under a ``recipe`` hash of everything that made them
(committee files, cell, temperature, seed, MD lengths): a second validation
of the same committee reads them back instead of rerunning the MD, so their
labels are reused.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from ase import Atoms

from alflow.config import config_hash
from alflow.structures import atoms_from_doc, structure_key
from alflow.validation.common import VALIDATION_STATUS, ValidationRun, repeat_to
from alflow.validation.eos import scaled
from alflow.validation.md import run_committee_md

__all__ = ["check_transfer", "frame_errors", "transfer_cell"]

log = logging.getLogger(__name__)


def transfer_cell(run: ValidationRun) -> tuple[Atoms, list[int], int]:
    """The transfer supercell, its repetitions and the largest training frame's size."""
    largest_training = max((len(f) for f in run.training_frames), default=0)
    atoms, repeats = repeat_to(
        run.largest_structure().atoms, run.config.transfer_min_atoms, more_than=largest_training
    )
    return atoms, repeats, largest_training


def _plan(run: ValidationRun) -> dict[str, int]:
    """MD steps: equilibration (a multiple of the spacing), spacing, total."""
    timestep_fs = run.ctx.config.exploration.timestep_fs
    spacing = max(1, round(run.config.transfer_spacing_ps * 1000.0 / timestep_fs))
    equilibration = spacing * math.ceil(
        run.config.transfer_equilibration_ps * 1000.0 / timestep_fs / spacing
    )
    total = equilibration + run.config.transfer_frames * spacing
    return {"equilibration_steps": equilibration, "spacing_steps": spacing, "steps": total}


def _recipe(run: ValidationRun, cell: Atoms, temperature_K: float, seed: int) -> str:
    """Hash of everything that determines one temperature's transfer frames."""
    exploration = run.ctx.config.exploration
    return config_hash(
        {
            "members": [m.get("sha256") for m in run.models],
            "cell": structure_key(cell),
            "temperature_K": float(temperature_K),
            "seed": int(seed),
            "frames": run.config.transfer_frames,
            "strain": run.config.transfer_strain,
            "timestep_fs": exploration.timestep_fs,
            "friction_per_fs": exploration.friction_per_fs,
            **_plan(run),
        }
    )


def _stored_frames(run: ValidationRun, recipe: str) -> list[tuple[Atoms, dict[str, Any]]]:
    """Frames an earlier validation made with the same recipe, in order."""
    docs = run.ctx.store.structures_of(
        run.ctx.campaign,
        status=VALIDATION_STATUS,
        where={"origin.check": "transfer", "origin.recipe": recipe},
        fields=("atoms", "origin"),
    )
    frames = [(atoms_from_doc(d["atoms"]), dict(d["origin"])) for d in docs]
    return sorted(frames, key=lambda item: item[1].get("index", 0))


def _md_frames(
    run: ValidationRun, cell: Atoms, temperature_K: float, seed: int, recipe: str
) -> tuple[list[tuple[Atoms, dict[str, Any]]], str | None]:
    """Committee MD at one temperature: the frames to label and why it stopped (or None)."""
    plan = _plan(run)
    walk = run_committee_md(
        run,
        cell,
        temperature_K=temperature_K,
        steps=plan["steps"],
        sample_interval_steps=plan["spacing_steps"],
        seed=seed,
        label=f"transfer MD at {temperature_K:g} K, {len(cell)} atoms",
    )
    picked = [f for f in walk.frames if f.step > plan["equilibration_steps"] and not f.stopped]
    base = {"recipe": recipe, "temperature_K": float(temperature_K), "seed": seed}
    frames = [
        (f.atoms, {**base, "index": i, "step": f.step, "strain": 0.0})
        for i, f in enumerate(picked[: run.config.transfer_frames])
    ]
    if frames and run.config.transfer_strain > 0:
        last_atoms, last_origin = frames[-1]
        strained = scaled(last_atoms, run.config.transfer_strain)
        origin = {**last_origin, "index": len(frames), "strain": run.config.transfer_strain}
        frames.append((strained, origin))
    return frames, walk.stop_reason


def frame_errors(calc: Any, frames: list[Atoms], labels: list[dict[str, Any]]) -> dict[str, Any]:
    """Committee-mean errors and the committee's deviation on labelled frames.

    Returns
    -------
    dict
        ``n_frames``, ``force_rmse_eV_A``, ``energy_mae_meV_atom``,
        ``energy_mean_error_meV_atom`` (committee − reference),
        ``max_force_dev_eV_A`` (mean and max over frames) and
        ``energy_std_meV_atom`` (mean).
    """
    if not frames:
        return {"n_frames": 0, "force_rmse_eV_A": None, "energy_mae_meV_atom": None}
    squared, energy_errors, deviations, spreads = [], [], [], []
    for atoms, label in zip(frames, labels, strict=True):
        atoms = atoms.copy()
        atoms.calc = calc
        forces = np.asarray(atoms.get_forces())
        energy_eV = float(atoms.get_potential_energy())
        squared.append(np.ravel(forces - np.asarray(label["forces_eV_A"])) ** 2)
        energy_errors.append(1000.0 * (energy_eV - float(label["energy_eV"])) / len(atoms))
        deviations.append(float(calc.results.get("max_force_dev", np.nan)))
        spreads.append(1000.0 * float(calc.results.get("energy_std", np.nan)) / len(atoms))
    errors = np.asarray(energy_errors)
    return {
        "n_frames": len(frames),
        "force_rmse_eV_A": float(np.sqrt(np.mean(np.concatenate(squared)))),
        "energy_mae_meV_atom": float(np.mean(np.abs(errors))),
        "energy_mean_error_meV_atom": float(np.mean(errors)),
        "max_force_dev_eV_A": {
            "mean": float(np.mean(deviations)),
            "max": float(np.max(deviations)),
        },
        "energy_std_meV_atom": float(np.mean(spreads)),
    }


def _one_temperature(run: ValidationRun, cell: Atoms, index: int, temperature_K: float) -> dict:
    """Frames, labels and errors at one temperature."""
    seed = run.config.seed + 1 + index
    recipe = _recipe(run, cell, temperature_K, seed)
    expected = run.config.transfer_frames + (1 if run.config.transfer_strain > 0 else 0)
    frames = _stored_frames(run, recipe)
    reused, stop_reason = len(frames) == expected, None
    if not reused:
        frames, stop_reason = _md_frames(run, cell, temperature_K, seed, recipe)
    labelled: dict[bool, tuple[list[Atoms], list[dict[str, Any]]]] = {
        False: ([], []),
        True: ([], []),
    }
    for atoms, origin in frames:
        label = run.references.label(
            atoms,
            check="transfer",
            name=f"T{temperature_K:g}-{origin['index']}",
            origin=origin,
        )
        if label is not None:
            group = labelled[origin["strain"] > 0]
            group[0].append(atoms)
            group[1].append(label)
    md = frame_errors(run.calc, *labelled[False])
    strained = frame_errors(run.calc, *labelled[True]) if run.config.transfer_strain > 0 else None
    log.info(
        "transfer at %g K: %d frames, force RMSE %s eV/Å",
        temperature_K,
        md["n_frames"],
        "n/a" if md["force_rmse_eV_A"] is None else f"{md['force_rmse_eV_A']:.3f}",
    )
    return {
        "temperature_K": float(temperature_K),
        "seed": seed,
        "recipe": recipe,
        "frames_reused": reused,
        "stop_reason": stop_reason,
        **md,
        "strained": None
        if strained is None
        else {"strain": run.config.transfer_strain, **strained},
    }


def check_transfer(run: ValidationRun) -> dict[str, Any]:
    """Transfer errors at every campaign temperature (see the module docstring).

    Returns
    -------
    dict
        ``n_atoms``, ``repeats``, ``largest_training_atoms``, the MD plan,
        ``temperatures`` (one dict per temperature) and the pooled
        ``force_rmse_eV_A`` over every unstrained frame.
    """
    cell, repeats, largest_training = transfer_cell(run)
    result: dict[str, Any] = {
        "n_atoms": len(cell),
        "repeats": repeats,
        "largest_training_atoms": largest_training,
        **_plan(run),
        "temperatures": [],
    }
    if run.config.transfer_frames == 0:
        return {**result, "note": "transfer_frames is 0"}
    temperatures = run.ctx.config.exploration.temperatures_K
    rows = [_one_temperature(run, cell, i, t) for i, t in enumerate(temperatures)]
    counted = [r for r in rows if r["n_frames"]]
    pooled = (
        math.sqrt(
            sum(r["force_rmse_eV_A"] ** 2 * r["n_frames"] for r in counted)
            / sum(r["n_frames"] for r in counted)
        )
        if counted
        else None
    )
    return {**result, "temperatures": rows, "force_rmse_eV_A": pooled}
