"""Write query results to files other codes read: extended XYZ and pymatgen JSON.

extxyz
    One frame per structure, numbers written with full double precision
    (``repr``), so positions, cell, energies, forces and stress come back
    bit-for-bit through ``ase.io.read``. A labeled frame carries its label
    twice: as ``energy`` / ``forces`` / ``stress`` (read by ASE into a
    ``SinglePointCalculator``) and as ``REF_energy`` / ``REF_forces`` /
    ``REF_stress``, mace-torch's default ``--energy_key`` / ``--forces_key`` /
    ``--stress_key`` (since 0.3.10), so ``mace_run_train --train_file OUT.xyz``
    needs no key options. Units: eV, eV/Å, eV/Å³ (stress in ASE's sign
    convention; ``REF_stress`` as 6 Voigt components xx yy zz yz xz xy,
    ``stress`` as the full 3×3 matrix that ASE writes).
json
    A JSON array of pymatgen ``Structure.as_dict()`` (``Molecule`` without a
    cell) with ``properties`` (key, campaign, iteration, status, energy_eV,
    energy_per_atom_eV, stress_eV_A3, max_force_dev_eV_A, ...) and the site
    property ``forces_eV_A``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
from ase import Atoms

from alflow.errors import ConfigError, StoreError
from alflow.query.api import atoms_to_pymatgen, voigt_stress

__all__ = ["EXPORT_FORMATS", "export_atoms", "write_extxyz", "write_pymatgen_json"]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("extxyz", "json")
#: info keys not written as per-frame key=value pairs (written another way).
_SKIP_INFO = frozenset({"energy", "stress", "REF_energy", "REF_stress", "pbc", "Lattice"})


def _number(value: float) -> str:
    return repr(float(value))


def _value(value: Any) -> str | None:
    """One extxyz info value, or None if it cannot be written faithfully."""
    if isinstance(value, (bool, np.bool_)):
        return "T" if value else "F"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _number(value)
    if isinstance(value, str):
        if not value or any(c in value for c in ' "=\\\n\t,'):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
            return f'"{escaped}"'
        return value
    return None


def _frame(atoms: Atoms) -> str:
    """One extxyz frame (both lines of header and the atom lines)."""
    n = len(atoms)
    results = atoms.calc.results if atoms.calc is not None else {}
    columns = [atoms.get_chemical_symbols(), np.asarray(atoms.positions, float)]
    properties = ["species:S:1", "pos:R:3"]
    pairs: list[str] = []
    cell = np.asarray(atoms.cell, float)
    if atoms.pbc.any() or np.abs(cell).sum() > 0:
        pairs.append('Lattice="' + " ".join(_number(x) for x in cell.reshape(9)) + '"')
    if "forces" in results:
        forces = np.asarray(results["forces"], float)
        columns += [forces, forces]
        properties += ["forces:R:3", "REF_forces:R:3"]
    pairs.insert(0 if not pairs else 1, "Properties=" + ":".join(properties))
    if "energy" in results:
        energy = _number(results["energy"])
        pairs += [f"energy={energy}", f"REF_energy={energy}"]
    if "stress" in results:
        voigt = voigt_stress(results["stress"])
        full = np.array(
            [
                [voigt[0], voigt[5], voigt[4]],
                [voigt[5], voigt[1], voigt[3]],
                [voigt[4], voigt[3], voigt[2]],
            ]
        )
        pairs.append('stress="' + " ".join(_number(x) for x in full.reshape(9)) + '"')
        pairs.append('REF_stress="' + " ".join(_number(x) for x in voigt) + '"')
    for name, value in atoms.info.items():
        if name in _SKIP_INFO:
            continue
        text = _value(value)
        if text is None:
            log.debug("extxyz: info '%s' of type %s not written", name, type(value).__name__)
            continue
        pairs.append(f"{name}={text}")
    pairs.append('pbc="' + " ".join("T" if p else "F" for p in atoms.pbc) + '"')
    lines = [str(n), " ".join(pairs)]
    symbols = columns[0]
    arrays = np.hstack(columns[1:]) if len(columns) > 1 else np.empty((n, 0))
    for i in range(n):
        lines.append(symbols[i] + " " + " ".join(_number(x) for x in arrays[i]))
    return "\n".join(lines) + "\n"


def write_extxyz(frames: Iterable[Atoms], handle: IO[str]) -> int:
    """Write frames as extended XYZ to an open text file; return how many."""
    count = 0
    for atoms in frames:
        handle.write(_frame(atoms))
        count += 1
    return count


def write_pymatgen_json(frames: Iterable[Atoms], handle: IO[str]) -> int:
    """Write frames as a JSON array of pymatgen dicts, one per line; return how many."""
    count = 0
    handle.write("[")
    for atoms in frames:
        handle.write(",\n" if count else "\n")
        handle.write(json.dumps(atoms_to_pymatgen(atoms).as_dict(), default=_jsonable))
        count += 1
    handle.write("\n]\n")
    return count


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def export_atoms(frames: Iterable[Atoms], out: str | Path, fmt: str) -> int:
    """Write ``frames`` to ``out`` in ``fmt`` atomically (temporary file, rename).

    Parameters
    ----------
    frames
        Structures, e.g. ``Database.atoms(query)`` (consumed lazily).
    out
        Output file; ``-`` is not accepted (use the Python API for streams).
    fmt
        ``extxyz`` or ``json``.

    Returns
    -------
    int
        Number of structures written.

    Raises
    ------
    ConfigError
        Unknown format.
    StoreError
        The file cannot be written.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format '{fmt}' (choose from {', '.join(EXPORT_FORMATS)})"
        )
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = write_extxyz if fmt == "extxyz" else write_pymatgen_json
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            count = writer(frames, handle)
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("wrote %d structures to %s (%s)", count, path, fmt)
    return count
