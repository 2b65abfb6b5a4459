"""Tiny MACE committees on EMT copper, for tests and benchmarks (no download).

- :func:`copper_frames`: rattled, strained 32-atom fcc Cu cells labeled with
  ASE's EMT (energy and forces), a small training set.
- :func:`train_side_by_side`: :func:`~alflow.committee.train.train_member`
  for several (frames, seed) jobs, a few at a time, one torch thread each.

Nothing here imports torch or mace at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from alflow.committee.train import TrainedMember, train_member
from alflow.config import MaceModelConfig, TrainingConfig

__all__ = ["A_CU_A", "copper_frames", "train_side_by_side"]

#: fcc Cu lattice constant of the frames (Å).
A_CU_A = 3.61


def copper_frames(n: int, seed: int = 0) -> list[Atoms]:
    """Rattled (0.06 Å) and strained (±2 %) 32-atom Cu cells labeled with EMT.

    Parameters
    ----------
    n
        Number of frames.
    seed
        Seeds the rattle and strain; the same seed gives the same frames.

    Returns
    -------
    list of ase.Atoms
        Each with a SinglePointCalculator holding its EMT energy (eV) and
        forces (eV/Å).
    """
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=A_CU_A, cubic=True).repeat((2, 2, 2))
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.02, 0.02)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.06, atoms.positions.shape)
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


def train_side_by_side(
    jobs: Sequence[tuple[Sequence[Atoms], int]],
    *,
    model: MaceModelConfig,
    training: TrainingConfig,
    root: Path,
    workers: int = 2,
) -> list[TrainedMember]:
    """Train one member per (frames, seed) job, ``workers`` at a time, one thread each.

    Parameters
    ----------
    jobs
        (training frames, seed) of each member; seeds name the members
        (``m{seed}``, trained in ``root / f"m{seed}"``) and must differ.
    model, training
        Passed to :func:`~alflow.committee.train.train_member`.
    root
        Folder of the members' work directories.
    workers
        Trainings run side by side.

    Returns
    -------
    list of TrainedMember
        In the order of ``jobs``.

    Raises
    ------
    ValueError
        Two jobs share a seed.
    TrainingError
        A training failed (as :func:`~alflow.committee.train.train_member`).
    """
    seeds = [seed for _, seed in jobs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"jobs need different seeds, got {seeds}")
    with ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(
                train_member,
                frames,
                model=model,
                training=training,
                seed=seed,
                workdir=Path(root) / f"m{seed}",
                name=f"m{seed}",
                threads=1,
            )
            for frames, seed in jobs
        ]
        return [f.result() for f in futures]
