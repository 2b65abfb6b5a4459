"""The labeler interface: one reference calculation in, one :class:`LabelResult` out.

A labeler turns a configuration into reference labels (energy, forces,
stress, magnetic moments) with one reference method. Every implementation
(EMT in-process, GPAW under MPI) follows the same :class:`Labeler` protocol
and passes the same contract tests.

Failures raise :class:`LabelingFailedError`, a
:class:`~alflow.errors.LabelingError` that carries the record of every
attempt (``.attempts``), so a failed label can be stored with its history.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms

from alflow.errors import LabelingError

if TYPE_CHECKING:
    pass

__all__ = [
    "LabelResult",
    "Labeler",
    "LabelingFailedError",
    "isolated_atom_energies",
]

logger = logging.getLogger(__name__)


class LabelingFailedError(LabelingError):
    """A labeling error that carries the record of every attempt.

    Parameters
    ----------
    message
        What went wrong, for people.
    attempts
        One dict per attempt (settings changed, status, error text, wall time).
    """

    def __init__(self, message: str, attempts: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.attempts: list[dict[str, Any]] = list(attempts or [])


def _plain(value: Any) -> Any:
    """Recursively turn numpy arrays and scalars into JSON/BSON-able Python objects."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class LabelResult:
    """Reference labels of one configuration and how they were obtained.

    Attributes
    ----------
    energy_eV
        Total energy (eV), in the code's own zero (GPAW: relative to its
        reference atoms, extrapolated to zero smearing as ASE's potential
        energy; EMT: EMT's zero).
    forces_eV_A
        Forces (eV/Å), shape (N, 3).
    stress_eV_A3
        Stress (eV/Å³), Voigt order xx yy zz yz xz xy, ASE sign convention;
        None unless the cell is periodic in all three directions.
    magmoms_muB
        Local magnetic moments (μB), shape (N,); None unless spin-polarised.
    converged
        The SCF converged (always True for a returned result of a non-SCF code).
    scf_iterations
        SCF iterations of the successful attempt; None for non-SCF codes.
    wall_s
        Wall time of the successful calculation (s).
    cores
        Processes (MPI ranks) that computed it.
    host
        Host name of the (rank-0) process.
    code
        ``"emt"`` or ``"gpaw"``.
    code_version
        Version of the code (GPAW's or ASE's).
    parameters
        The full parameter set actually used (after retries, with the
        resolved k-point mesh); JSON-serialisable.
    parameters_hash
        :func:`alflow.config.config_hash` of the *requested* parameter set,
        stable across retries: together with the structure key it
        identifies a label.
    attempts
        One record per attempt: ``attempt``, ``status`` (ok, scf_failed,
        crashed, error, reused), ``settings`` (what was changed from the
        request), ``error``, ``wall_s``.
    parameters_effective_hash
        None when the label was computed with the requested physics (retries
        may still have changed SCF numerics: maxiter, mixer); otherwise the
        hash of the physics actually used (a last-resort retry doubled the
        smearing width), so training can leave such labels out.
    """

    energy_eV: float
    forces_eV_A: np.ndarray
    stress_eV_A3: np.ndarray | None
    magmoms_muB: np.ndarray | None
    converged: bool
    scf_iterations: int | None
    wall_s: float
    cores: int
    host: str
    code: str
    code_version: str
    parameters: dict[str, Any]
    parameters_hash: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    parameters_effective_hash: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """Plain JSON/BSON-able dict (lists instead of arrays).

        Returns
        -------
        dict
            Keys are the attribute names.
        """
        return {
            "energy_eV": float(self.energy_eV),
            "forces_eV_A": np.asarray(self.forces_eV_A, dtype=float).tolist(),
            "stress_eV_A3": None
            if self.stress_eV_A3 is None
            else np.asarray(self.stress_eV_A3, dtype=float).tolist(),
            "magmoms_muB": None
            if self.magmoms_muB is None
            else np.asarray(self.magmoms_muB, dtype=float).tolist(),
            "converged": bool(self.converged),
            "scf_iterations": None if self.scf_iterations is None else int(self.scf_iterations),
            "wall_s": float(self.wall_s),
            "cores": int(self.cores),
            "host": str(self.host),
            "code": str(self.code),
            "code_version": str(self.code_version),
            "parameters": _plain(self.parameters),
            "parameters_hash": str(self.parameters_hash),
            "attempts": _plain(self.attempts),
            "parameters_effective_hash": self.parameters_effective_hash,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LabelResult:
        """Inverse of :meth:`to_doc` (extra keys, such as a store's ``_id``, are ignored).

        Parameters
        ----------
        doc
            A dict written by :meth:`to_doc`.

        Returns
        -------
        LabelResult
        """
        stress = doc.get("stress_eV_A3")
        magmoms = doc.get("magmoms_muB")
        return cls(
            energy_eV=float(doc["energy_eV"]),
            forces_eV_A=np.asarray(doc["forces_eV_A"], dtype=float).reshape(-1, 3),
            stress_eV_A3=None if stress is None else np.asarray(stress, dtype=float),
            magmoms_muB=None if magmoms is None else np.asarray(magmoms, dtype=float),
            converged=bool(doc["converged"]),
            scf_iterations=doc.get("scf_iterations"),
            wall_s=float(doc["wall_s"]),
            cores=int(doc["cores"]),
            host=str(doc["host"]),
            code=str(doc["code"]),
            code_version=str(doc["code_version"]),
            parameters=dict(doc["parameters"]),
            parameters_hash=str(doc["parameters_hash"]),
            attempts=list(doc.get("attempts", [])),
            parameters_effective_hash=doc.get("parameters_effective_hash"),
        )


@runtime_checkable
class Labeler(Protocol):
    """What every reference method offers.

    Attributes
    ----------
    code
        ``"emt"`` or ``"gpaw"``.
    """

    code: str

    def parameters(self) -> dict[str, Any]:
        """The requested parameter set (JSON-serialisable; what the hash hashes)."""
        ...

    def parameters_hash(self) -> str:
        """:func:`alflow.config.config_hash` of :meth:`parameters`."""
        ...

    def label(self, atoms: Atoms, workdir: Path) -> LabelResult:
        """Compute the labels of ``atoms``, using ``workdir`` for files.

        Raises
        ------
        LabelingError
            When it finally fails; ``.attempts`` lists every attempt.
        """
        ...


def isolated_atom_box(symbol: str, vacuum_A: float) -> Atoms:
    """One atom in a non-periodic, slightly orthorhombic box.

    The three box edges differ by 0.1 Å so that no spurious cubic symmetry
    keeps degenerate open-shell orbitals equally occupied.

    Parameters
    ----------
    symbol
        Chemical symbol.
    vacuum_A
        Vacuum on each side of the atom (Å).

    Returns
    -------
    ase.Atoms
    """
    edge_A = 2.0 * vacuum_A
    atoms = Atoms(symbol, cell=[edge_A, edge_A + 0.1, edge_A + 0.2], pbc=False)
    atoms.center()
    return atoms


def isolated_atom_energies(
    labeler: Labeler, symbols: Iterable[str], workdir: Path, *, vacuum_A: float = 6.0
) -> dict[str, float]:
    """Energy of each element's isolated atom (the E0s of a MACE training set).

    A labeler with an ``isolated_atom_energy(symbol, workdir, *, vacuum_A)``
    method computes it its own way (GPAW: one spin-polarised atom with its
    Hund's-rule moment fixed, Fermi–Dirac 0.01 eV, in a non-periodic box, Γ
    point only; EMT: the EMT energy of a lone atom); any other labeler
    labels one atom in a non-periodic box. The values are
    consistent with :meth:`Labeler.label` energies of the same labeler, so
    compute them once per parameter set and cache them under
    ``labeler.parameters_hash()``.

    Parameters
    ----------
    labeler
        The campaign's labeler.
    symbols
        Elements (duplicates are fine).
    workdir
        Directory for the calculations (one subdirectory per element).
    vacuum_A
        Vacuum around the atom (Å) for codes that need a box.

    Returns
    -------
    dict
        Symbol → energy (eV).

    Raises
    ------
    LabelingError
        A calculation failed.
    """
    energies: dict[str, float] = {}
    workdir = Path(workdir)
    for symbol in sorted(set(symbols)):
        subdir = workdir / f"isolated-{symbol}"
        specific = getattr(labeler, "isolated_atom_energy", None)
        if callable(specific):
            energy_eV = float(specific(symbol, subdir, vacuum_A=vacuum_A))
        else:
            energy_eV = float(labeler.label(isolated_atom_box(symbol, vacuum_A), subdir).energy_eV)
        if not math.isfinite(energy_eV):
            raise LabelingFailedError(f"isolated {symbol} atom: non-finite energy {energy_eV}")
        logger.info("isolated %s atom (%s): %.6f eV", symbol, labeler.code, energy_eV)
        energies[symbol] = energy_eV
    return energies
