"""Structures as plain data: content keys, documents, and the campaign's initial set.

A structure's key is a sha256 of its species, positions, cell and pbc rounded
to 1e-6 Å, so the same configuration gets the same key in every process and
every iteration. Documents hold the atoms in a plain ASE-readable form
(``numbers``, ``positions_A``, ``cell_A``, ``pbc``) and, for periodic cells,
pymatgen's ``Structure.as_dict()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols

from alflow.config import BulkStructure, FileStructure, InitialConfig
from alflow.errors import ConfigError, StructureError

__all__ = [
    "atoms_from_doc",
    "atoms_to_doc",
    "build_initial_structures",
    "check_finite",
    "holdout_frames",
    "labeled_atoms",
    "min_distance_A",
    "seed_frames",
    "shortest_pair_distances_A",
    "structure_key",
]

_DECIMALS = 6


def structure_key(atoms: Atoms) -> str:
    """Content hash of a configuration (species, positions, cell, pbc).

    Parameters
    ----------
    atoms
        The configuration. Positions are wrapped into the cell along
        periodic directions and rounded to 1e-6 Å before hashing.

    Returns
    -------
    str
        24 hex digits of a sha256.
    """
    positions = atoms.get_positions(wrap=bool(atoms.pbc.any()))
    digest = hashlib.sha256()
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    digest.update(np.round(positions, _DECIMALS).astype(np.float64).tobytes())
    digest.update(np.round(np.asarray(atoms.cell), _DECIMALS).astype(np.float64).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return digest.hexdigest()[:24]


def check_finite(atoms: Atoms, where: str = "structure") -> None:
    """Raise StructureError if positions or cell contain NaN or infinity."""
    if not np.all(np.isfinite(atoms.positions)):
        raise StructureError(f"{where}: non-finite atomic positions")
    if not np.all(np.isfinite(np.asarray(atoms.cell))):
        raise StructureError(f"{where}: non-finite cell")


def min_distance_A(atoms: Atoms) -> float:
    """Smallest interatomic distance (Å), periodic images included; inf for one atom."""
    if len(atoms) < 2 and not atoms.pbc.any():
        return float("inf")
    from ase.neighborlist import neighbor_list

    cutoff = 3.0
    while cutoff <= 12.0:
        distances = neighbor_list("d", atoms, cutoff)
        if len(distances):
            return float(distances.min())
        cutoff *= 2
    return float("inf")


def shortest_pair_distances_A(
    frames: Iterable[Atoms], cutoff_A: float = 4.0
) -> dict[tuple[str, str], float]:
    """Shortest distance (Å) of each element pair over ``frames``, periodic images included.

    Keys are alphabetically sorted symbol pairs, e.g. ``("Au", "Cu")``; a
    pair never closer than ``cutoff_A`` in any frame is absent.
    """
    from ase.neighborlist import neighbor_list

    shortest: dict[tuple[str, str], float] = {}
    for atoms in frames:
        if len(atoms) < 2:
            continue
        i, j, d = neighbor_list("ijd", atoms, float(cutoff_A))
        numbers = atoms.numbers
        lo, hi = np.minimum(numbers[i], numbers[j]), np.maximum(numbers[i], numbers[j])
        for z_lo, z_hi in set(zip(lo.tolist(), hi.tolist(), strict=True)):
            dist = float(d[(lo == z_lo) & (hi == z_hi)].min())
            pair = tuple(sorted((chemical_symbols[z_lo], chemical_symbols[z_hi])))
            shortest[pair] = min(dist, shortest.get(pair, np.inf))  # type: ignore[index]
    return shortest


def atoms_to_doc(atoms: Atoms) -> dict[str, Any]:
    """Plain, ASE- and pymatgen-readable document of a configuration (no labels)."""
    doc: dict[str, Any] = {
        "numbers": [int(z) for z in atoms.numbers],
        "symbols": atoms.get_chemical_symbols(),
        "positions_A": np.asarray(atoms.positions, dtype=float).tolist(),
        "cell_A": np.asarray(atoms.cell, dtype=float).tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
    }
    return doc


def pymatgen_dict(atoms: Atoms) -> dict[str, Any] | None:
    """pymatgen ``Structure.as_dict()`` of a 3D-periodic cell (None otherwise)."""
    if not atoms.pbc.all():
        return None
    from pymatgen.io.ase import AseAtomsAdaptor

    plain = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    return AseAtomsAdaptor.get_structure(plain).as_dict()


def atoms_from_doc(doc: dict[str, Any]) -> Atoms:
    """Inverse of :func:`atoms_to_doc`."""
    return Atoms(
        numbers=doc["numbers"], positions=doc["positions_A"], cell=doc["cell_A"], pbc=doc["pbc"]
    )


def labeled_atoms(
    atoms: Atoms,
    energy_eV: float,
    forces_eV_A: np.ndarray | Sequence[Sequence[float]],
    stress_eV_A3: np.ndarray | Sequence[float] | None = None,
) -> Atoms:
    """Copy of ``atoms`` carrying reference labels in a SinglePointCalculator."""
    labeled = atoms.copy()
    results: dict[str, Any] = {"energy": float(energy_eV), "forces": np.asarray(forces_eV_A, float)}
    if stress_eV_A3 is not None:
        results["stress"] = np.asarray(stress_eV_A3, float)
    labeled.calc = SinglePointCalculator(labeled, **results)
    return labeled


def _check_symbols(atoms: Atoms, where: str) -> None:
    for symbol in set(atoms.get_chemical_symbols()):
        if symbol not in chemical_symbols[1:]:
            raise ConfigError(f"{where}: unknown element '{symbol}'")


def _build_one(spec: BulkStructure | FileStructure, base_dir: Path, where: str) -> list[Atoms]:
    if isinstance(spec, BulkStructure):
        from ase.build import bulk

        try:
            atoms = bulk(spec.symbol, spec.crystalstructure, a=spec.a_A, cubic=spec.cubic)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{where}: cannot build bulk '{spec.symbol}': {exc}") from None
        frames = [atoms]
    else:
        from ase.io import read

        path = Path(spec.path)
        path = path if path.is_absolute() else base_dir / path
        if not path.exists():
            raise ConfigError(f"{where}: structure file not found: {path}")
        try:
            read_frames = read(str(path), index=spec.index)
        except Exception as exc:  # ASE raises many kinds for unreadable files
            raise ConfigError(f"{where}: cannot read structure file {path}: {exc}") from None
        frames = read_frames if isinstance(read_frames, list) else [read_frames]
    built = []
    for atoms in frames:
        _check_symbols(atoms, where)
        atoms = atoms.repeat(spec.supercell)
        try:
            check_finite(atoms, where)
        except StructureError as exc:
            raise ConfigError(str(exc)) from None
        atoms.calc = None
        built.append(atoms)
    return built


def build_initial_structures(initial: InitialConfig, base_dir: str | Path = ".") -> list[Atoms]:
    """Build or read every initial structure of a campaign.

    Parameters
    ----------
    initial
        The campaign's ``initial`` section.
    base_dir
        Directory that relative file paths refer to.

    Returns
    -------
    list of ase.Atoms

    Raises
    ------
    ConfigError
        A missing or unreadable file, an unknown element, a non-finite value.
    """
    structures: list[Atoms] = []
    for i, spec in enumerate(initial.structures):
        structures.extend(_build_one(spec, Path(base_dir), f"initial.structures[{i}]"))
    return structures


def seed_frames(structures: Sequence[Atoms], initial: InitialConfig, seed: int) -> list[Atoms]:
    """The frames labeled before iteration 0: each structure and rattled, strained copies.

    Parameters
    ----------
    structures
        Initial structures.
    initial
        Number of copies, rattle amplitude (Å) and largest strain.
    seed
        Random seed (the same seed gives the same frames).

    Returns
    -------
    list of ase.Atoms
    """
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    for atoms in structures:
        frames.append(atoms.copy())
        for _ in range(initial.n_rattled):
            copy = atoms.copy()
            if copy.pbc.all() and initial.strain_max > 0:
                strain = rng.uniform(-initial.strain_max, initial.strain_max, (3, 3))
                strain = 0.5 * (strain + strain.T)
                copy.set_cell(np.asarray(copy.cell) @ (np.eye(3) + strain), scale_atoms=True)
            copy.positions += rng.normal(0.0, initial.rattle_stdev_A, copy.positions.shape)
            frames.append(copy)
    return frames


def holdout_frames(structures: Sequence[Atoms], initial: InitialConfig, seed: int) -> list[Atoms]:
    """A held-out test set: rattled, strained copies never used for training.

    ``initial.n_holdout`` copies per structure, rattled by
    ``holdout_rattle_factor × rattle_stdev_A`` with their own random stream,
    so they differ from the seed frames.
    """
    stronger = initial.model_copy(
        update={
            "n_rattled": initial.n_holdout,
            "rattle_stdev_A": initial.rattle_stdev_A * initial.holdout_rattle_factor,
        }
    )
    frames = seed_frames(structures, stronger, seed + 104729)
    per_structure = initial.n_holdout + 1
    return [f for i, f in enumerate(frames) if i % per_structure]  # drop the unperturbed copies
