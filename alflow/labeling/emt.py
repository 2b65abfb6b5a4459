"""ASE's effective-medium theory as a cheap stand-in oracle.

EMT runs in-process in milliseconds and has the same labeler interface as
GPAW, so the whole active-learning loop can be tested and demonstrated
without DFT. It knows only the elements ASE has EMT parameters for.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from alflow.config import config_hash
from alflow.labeling.base import LabelingFailedError, LabelResult, isolated_atom_box

__all__ = ["EMT_ELEMENTS", "EMTLabeler", "check_supported"]

logger = logging.getLogger(__name__)

#: Elements with EMT parameters in :mod:`ase.calculators.emt`.
EMT_ELEMENTS: tuple[str, ...] = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O")


def check_supported(symbols: Iterable[str]) -> None:
    """Raise if EMT has no parameters for one of ``symbols``.

    Parameters
    ----------
    symbols
        Chemical symbols (duplicates are fine).

    Raises
    ------
    LabelingFailedError
        Naming the unsupported elements and the supported ones.
    """
    missing = sorted(set(symbols) - set(EMT_ELEMENTS))
    if missing:
        raise LabelingFailedError(
            f"EMT has no parameters for element(s) {', '.join(missing)}; "
            f"supported: {' '.join(EMT_ELEMENTS)}"
        )


class EMTLabeler:
    """Label configurations with ASE's EMT potential, in-process.

    Examples
    --------
    >>> from ase.build import bulk
    >>> result = EMTLabeler().label(bulk("Cu", cubic=True), Path("."))
    >>> result.forces_eV_A.shape
    (4, 3)
    """

    code = "emt"

    def __init__(self) -> None:
        self._parameters: dict[str, Any] = {"code": "emt", "asap_cutoff": False}

    def parameters(self) -> dict[str, Any]:
        """The parameter set: ``{"code": "emt", "asap_cutoff": False}``."""
        return dict(self._parameters)

    def parameters_hash(self) -> str:
        """:func:`alflow.config.config_hash` of :meth:`parameters`."""
        return config_hash(self._parameters)

    def check_supported(self, symbols: Iterable[str]) -> None:
        """Raise LabelingFailedError for elements EMT does not know (see :func:`check_supported`)."""
        check_supported(symbols)

    def label(self, atoms: Atoms, workdir: Path) -> LabelResult:
        """EMT energy, forces and (3D-periodic cells) stress of ``atoms``.

        Parameters
        ----------
        atoms
            The configuration (not modified).
        workdir
            Unused (EMT writes no files); accepted for the protocol.

        Returns
        -------
        LabelResult

        Raises
        ------
        LabelingFailedError
            Unsupported element, non-finite input or result.
        """
        from ase import __version__ as ase_version
        from ase.calculators.emt import EMT

        check_supported(atoms.get_chemical_symbols())
        if not (np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.cell[:]))):
            raise LabelingFailedError("EMT: non-finite positions or cell")
        start = time.perf_counter()
        work = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        work.calc = EMT(asap_cutoff=self._parameters["asap_cutoff"])
        energy_eV = float(work.get_potential_energy())
        forces_eV_A = np.array(work.get_forces(), dtype=float)
        stress_eV_A3 = (
            np.array(work.get_stress(voigt=True), dtype=float) if work.pbc.all() else None
        )
        wall_s = time.perf_counter() - start
        if not (np.isfinite(energy_eV) and np.all(np.isfinite(forces_eV_A))):
            attempt = {"attempt": 0, "status": "error", "settings": {}, "wall_s": wall_s}
            attempt["error"] = "non-finite EMT energy or forces"
            raise LabelingFailedError("EMT: non-finite energy or forces", attempts=[attempt])
        logger.debug("EMT %s: %.6f eV in %.3f s", atoms.get_chemical_formula(), energy_eV, wall_s)
        return LabelResult(
            energy_eV=energy_eV,
            forces_eV_A=forces_eV_A,
            stress_eV_A3=stress_eV_A3,
            magmoms_muB=None,
            converged=True,
            scf_iterations=None,
            wall_s=wall_s,
            cores=1,
            host=socket.gethostname(),
            code=self.code,
            code_version=ase_version,
            parameters=self.parameters(),
            parameters_hash=self.parameters_hash(),
            attempts=[
                {"attempt": 0, "status": "ok", "settings": {}, "error": None, "wall_s": wall_s}
            ],
        )

    def isolated_atom_energy(self, symbol: str, workdir: Path, *, vacuum_A: float = 6.0) -> float:
        """EMT energy (eV) of one lone atom of ``symbol``.

        Parameters
        ----------
        symbol
            Chemical symbol.
        workdir
            Unused.
        vacuum_A
            Vacuum around the atom (Å); EMT's cutoff makes any value above ~5 Å exact.

        Returns
        -------
        float
        """
        return self.label(isolated_atom_box(symbol, vacuum_A), workdir).energy_eV
