"""A torch-free stand-in for the MACE committee (for tests and demos).

:class:`FakeCommittee` returns ASE's EMT energy and forces plus seeded
Gaussian noise per member. The noise grows with a "distance from training"
proxy: the per-atom EMT force magnitude (large away from equilibrium, i.e.
hot or distorted frames) and the volumetric strain against a reference volume
per atom. The noise of a configuration depends only on the seed and the
configuration itself (not on the call order), so runs are reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from alflow.committee.uncertainty import committee_statistics, stress_wanted

__all__ = ["FakeCommittee"]


class FakeCommittee(Calculator):
    """EMT plus per-member noise, with the result keys of the real committee.

    Parameters
    ----------
    n_members
        Committee size M (>= 2).
    noise_eV_A
        Force noise (standard deviation per component, eV/Å) of a frame at
        equilibrium and at the reference volume.
    seed
        Random seed; the same seed and configuration give the same results.
    force_scale_eV_A
        The noise of atom *i* is multiplied by ``1 + |F_EMT,i| / force_scale_eV_A``.
    reference_volume_A3_per_atom
        Volume per atom of the "training" structures; None: strain is not used.
    strain_scale
        The noise is multiplied by ``1 + |V/V0 - 1| / strain_scale`` (3D-periodic cells).
    energy_noise_eV_atom
        Energy noise per atom (eV/atom) at zero distance; scaled like the forces.
    propagator
        None: each call returns the committee mean. A member index *m*: each
        call returns member *m*'s energy and forces, and
        :meth:`evaluate_committee` the whole committee (as
        :class:`~alflow.committee.calculator.CommitteeCalculator`).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    Results: ``energy``/``free_energy``/``forces`` (committee means),
    ``stress`` (EMT, 3D-periodic cells only), ``energy_comm`` (M,),
    ``forces_comm`` (M, N, 3), ``energy_std`` (eV), ``forces_std`` (N,)
    and ``max_force_dev`` (eV/Å), as :class:`CommitteeCalculator`.
    ``committee_evaluations`` counts full committee evaluations.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012

    def __init__(
        self,
        n_members: int = 4,
        *,
        noise_eV_A: float = 0.02,
        seed: int = 0,
        force_scale_eV_A: float = 0.5,
        reference_volume_A3_per_atom: float | None = None,
        strain_scale: float = 0.02,
        energy_noise_eV_atom: float = 0.002,
        propagator: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if n_members < 2:
            raise ValueError(f"n_members must be at least 2, got {n_members}")
        if noise_eV_A < 0 or energy_noise_eV_atom < 0:
            raise ValueError("noise levels must be non-negative")
        if force_scale_eV_A <= 0 or strain_scale <= 0:
            raise ValueError("force_scale_eV_A and strain_scale must be positive")
        self.n_members = n_members
        self.noise_eV_A = noise_eV_A
        self.seed = seed
        self.force_scale_eV_A = force_scale_eV_A
        self.reference_volume_A3_per_atom = reference_volume_A3_per_atom
        self.strain_scale = strain_scale
        self.energy_noise_eV_atom = energy_noise_eV_atom
        if propagator is not None and not 0 <= propagator < n_members:
            raise ValueError(f"propagator must be a member index < {n_members}, got {propagator}")
        self.propagator = propagator
        self.committee_evaluations = 0

    def _rng(self, atoms: Atoms) -> np.random.Generator:
        """Generator seeded by the seed and the configuration (order independent)."""
        digest = hashlib.sha256()
        digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
        digest.update(np.round(atoms.positions, 8).astype(np.float64).tobytes())
        digest.update(np.round(np.asarray(atoms.cell), 8).astype(np.float64).tobytes())
        key = int.from_bytes(digest.digest()[:8], "little")
        return np.random.default_rng([self.seed, key])

    def distance_factor(self, atoms: Atoms, forces_eV_A: np.ndarray) -> np.ndarray:
        """Per-atom noise multiplier (>= 1) of a configuration.

        Parameters
        ----------
        atoms
            The configuration.
        forces_eV_A
            Its EMT forces, shape (N, 3).

        Returns
        -------
        numpy.ndarray
            Shape (N,).
        """
        factor = 1.0 + np.linalg.norm(forces_eV_A, axis=1) / self.force_scale_eV_A
        if self.reference_volume_A3_per_atom is not None and atoms.pbc.all() and len(atoms):
            strain = abs(atoms.get_volume() / len(atoms) / self.reference_volume_A3_per_atom - 1.0)
            factor = factor * (1.0 + strain / self.strain_scale)
        return factor

    def _committee(self, atoms: Atoms, want_stress: bool) -> dict[str, Any]:
        """Every member's prediction for ``atoms`` and the committee statistics."""
        reference = atoms.copy()
        reference.calc = EMT()  # a fresh one: bitwise reproducible, whatever came before
        energy = float(reference.get_potential_energy())
        forces = reference.get_forces()
        n_atoms = len(atoms)
        factor = self.distance_factor(atoms, forces)
        rng = self._rng(atoms)
        force_noise = rng.standard_normal((self.n_members, n_atoms, 3))
        energy_noise = rng.standard_normal(self.n_members)
        forces_comm = forces[None] + self.noise_eV_A * factor[None, :, None] * force_noise
        mean_factor = float(factor.mean()) if n_atoms else 1.0
        energy_comm = energy + self.energy_noise_eV_atom * n_atoms * mean_factor * energy_noise
        results = committee_statistics(energy_comm, forces_comm)
        if want_stress:
            stress = reference.get_stress()
            results["stress"] = stress
            results["stress_comm"] = np.repeat(stress[None], self.n_members, axis=0)
        return results

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """EMT plus seeded member noise (see the class notes for the results)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = stress_wanted(atoms, properties)
        committee = self._committee(atoms, want_stress)
        if self.propagator is None:
            self.committee_evaluations += 1
            self.results = committee
            return
        m = self.propagator
        energy = float(committee["energy_comm"][m])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": committee["forces_comm"][m],
        }
        if want_stress:
            self.results["stress"] = committee["stress"]

    def evaluate_committee(self, atoms: Atoms) -> dict[str, Any]:
        """Whole-committee results for ``atoms`` (``self.results`` is left as it is).

        Parameters
        ----------
        atoms
            The configuration.

        Returns
        -------
        dict
            Committee means and the committee keys of the class notes.
        """
        if self.calculation_required(atoms, ["forces"]):
            self.calculate(atoms, ["energy", "forces"], all_changes)
        if self.propagator is None:
            return dict(self.results)
        self.committee_evaluations += 1
        return self._committee(self.atoms, want_stress=False)
