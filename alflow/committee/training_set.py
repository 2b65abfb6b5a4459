"""The training set of one member: checked frames, a seeded split, extended XYZ files.

:func:`check_frames` checks the labeled frames; :func:`write_training_set` splits them
(:func:`split_frames`, optionally bootstrapped) and writes ``train.xyz`` and
``valid.xyz`` with the labels under MACE's keys (:data:`ENERGY_KEY`,
:data:`FORCES_KEY`, :data:`STRESS_KEY`; :func:`to_training_atoms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from alflow.config import TrainingConfig
from alflow.errors import TrainingError

__all__ = [
    "ENERGY_KEY",
    "FORCES_KEY",
    "MACE_FRAME_KEYS",
    "STRESS_KEY",
    "check_frames",
    "split_frames",
    "to_training_atoms",
    "write_training_set",
]

ENERGY_KEY = "REF_energy"
FORCES_KEY = "REF_forces"
STRESS_KEY = "REF_stress"
#: Per-frame loss settings MACE reads from ``atoms.info`` (kept when writing training files).
MACE_FRAME_KEYS = ("config_type", "config_weight")
TRAIN_FILE = "train.xyz"
VALID_FILE = "valid.xyz"


def check_frames(frames: Sequence[Atoms]) -> None:
    """Raise TrainingError unless every frame carries finite energy and forces."""
    if len(frames) < 2:
        raise TrainingError(
            f"need at least 2 labeled frames (one for training, one for validation), got {len(frames)}"
        )
    for i, atoms in enumerate(frames):
        if not isinstance(atoms, Atoms) or len(atoms) == 0:
            raise TrainingError(f"frame {i}: not a non-empty ase.Atoms")
        calc = atoms.calc
        results = getattr(calc, "results", None) or {}
        if "energy" not in results or "forces" not in results:
            raise TrainingError(
                f"frame {i}: no reference labels (atoms.calc must be a SinglePointCalculator "
                "with energy and forces)"
            )
        energy = np.asarray(results["energy"], dtype=float)
        forces = np.asarray(results["forces"], dtype=float)
        if forces.shape != (len(atoms), 3):
            raise TrainingError(
                f"frame {i}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)"
            )
        if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(forces))):
            raise TrainingError(f"frame {i}: non-finite energy or forces")
        if not (
            np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(np.asarray(atoms.cell)))
        ):
            raise TrainingError(f"frame {i}: non-finite positions or cell")


def to_training_atoms(atoms: Atoms) -> Atoms:
    """Copy of a labeled frame with its labels as REF_* info/arrays (no calculator).

    ``config_type`` and ``config_weight`` in ``atoms.info`` are kept: MACE
    scales the frame's loss by the weight.
    """
    results = atoms.calc.results
    plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    plain.info.update({k: atoms.info[k] for k in MACE_FRAME_KEYS if k in atoms.info})
    plain.info[ENERGY_KEY] = float(results["energy"])
    plain.arrays[FORCES_KEY] = np.asarray(results["forces"], dtype=float).copy()
    stress = results.get("stress")
    if stress is not None and atoms.pbc.all():
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if np.all(np.isfinite(stress)):
            plain.info[STRESS_KEY] = stress.copy()
    return plain


def split_frames(
    n_frames: int, valid_fraction: float, seed: int, bootstrap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of frame indices.

    Parameters
    ----------
    n_frames
        Number of labeled frames (at least 2).
    valid_fraction
        Fraction of frames for validation; at least one frame, at most
        ``n_frames - 1``.
    seed
        Random seed: the same seed gives the same split.
    bootstrap
        Resample the training indices with replacement (same count).

    Returns
    -------
    train_idx, valid_idx : numpy.ndarray
        Integer index arrays.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_frames)
    n_valid = min(max(1, round(valid_fraction * n_frames)), n_frames - 1)
    valid_idx = np.sort(order[:n_valid])
    train_idx = np.sort(order[n_valid:])
    if bootstrap:
        train_idx = np.sort(rng.choice(train_idx, size=len(train_idx), replace=True))
    return train_idx, valid_idx


def write_training_set(
    frames: Sequence[Atoms], training: TrainingConfig, seed: int, workdir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``frames`` and write ``workdir/train.xyz`` and ``workdir/valid.xyz``.

    Parameters
    ----------
    frames
        Labeled frames, checked by :func:`check_frames`.
    training
        ``valid_fraction`` and ``bootstrap`` of the split.
    seed
        Seed of the split.
    workdir
        Existing directory the files are written to.

    Returns
    -------
    train_idx, valid_idx : numpy.ndarray
        The frames in each file (:func:`split_frames`).
    """
    from ase.io import write

    train_idx, valid_idx = split_frames(
        len(frames), training.valid_fraction, seed, training.bootstrap
    )
    for file_name, indices in ((TRAIN_FILE, train_idx), (VALID_FILE, valid_idx)):
        atoms = [to_training_atoms(frames[i]) for i in indices]
        write(Path(workdir) / file_name, atoms, format="extxyz")
    return train_idx, valid_idx
