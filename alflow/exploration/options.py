"""What every walker of a run shares: :class:`WalkerOptions`, and the checks MD needs.

The per-walker quantities (start, temperature, seed, pressure) are arguments
of :func:`~alflow.exploration.walker.run_walker`; everything the walkers of
an iteration have in common is one :class:`WalkerOptions`, built once
(:meth:`WalkerOptions.from_exploration` from the campaign's settings) and
handed to :func:`~alflow.exploration.walker.run_walker` or
:func:`~alflow.exploration.batched.run_walkers_batched` as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ase import Atoms

from alflow.config import ExplorationConfig
from alflow.contacts import ContactLimits
from alflow.errors import ExplorationError

__all__ = ["ENSEMBLES", "WalkerOptions", "check_walker_arguments", "resolve_options"]

#: The ensembles a walker runs.
ENSEMBLES = ("nvt", "npt")


@dataclass(frozen=True)
class WalkerOptions:
    """The MD and stop settings the walkers of a run share.

    Attributes
    ----------
    steps
        MD steps to run.
    timestep_fs
        Time step (fs).
    sample_interval_steps
        A frame is kept at step 0 and every this many steps.
    trust_hi_eV_A
        Stop when the committee's max force deviation reaches it (eV/Å).
    min_distance_A
        Stop when two atoms are closer than their pair's limit (Å; one number
        or :class:`~alflow.contacts.ContactLimits`); checked at full committee
        evaluations.
    max_temperature_factor
        Stop when the kinetic temperature exceeds this × the target.
    ensemble
        ``"nvt"``: Langevin (:class:`ase.md.langevin.Langevin`). ``"npt"``:
        isotropic Langevin barostat (:class:`ase.md.langevinbaoab.LangevinBAOAB`,
        Quigley–Probert Langevin–Hoover with BAOAB), 3D-periodic cells only.
    friction_per_fs
        Langevin friction (1/fs); NPT uses the time constant ``1/friction``.
    barostat_time_fs
        NPT only: time constant of the cell fluctuations (fs).
    committee_interval_steps
        Full committee evaluation (and uncertainty check) every this many
        steps; must divide ``sample_interval_steps``. None: every sample step.
        A calculator that is not propagating is checked at every step anyway.
    """

    steps: int
    timestep_fs: float
    sample_interval_steps: int
    trust_hi_eV_A: float
    min_distance_A: ContactLimits | float
    max_temperature_factor: float
    ensemble: str = "nvt"
    friction_per_fs: float = 0.01
    barostat_time_fs: float = 1000.0
    committee_interval_steps: int | None = None

    @property
    def committee_every_steps(self) -> int:
        """Steps between full committee evaluations (resolves the None default)."""
        return self.committee_interval_steps or self.sample_interval_steps

    @classmethod
    def from_exploration(
        cls,
        exploration: ExplorationConfig,
        *,
        trust_hi_eV_A: float,
        min_distance_A: ContactLimits | float,
    ) -> WalkerOptions:
        """The options of a campaign's walkers.

        Parameters
        ----------
        exploration
            The campaign's exploration settings.
        trust_hi_eV_A
            Upper edge of the trust window (``selection.trust_hi_eV_A``).
        min_distance_A
            Closest allowed pairs (from ``selection.sanity`` and the data).
        """
        return cls(
            steps=exploration.steps,
            timestep_fs=exploration.timestep_fs,
            sample_interval_steps=exploration.sample_interval_steps,
            trust_hi_eV_A=trust_hi_eV_A,
            min_distance_A=min_distance_A,
            max_temperature_factor=exploration.max_temperature_factor,
            ensemble=exploration.ensemble,
            friction_per_fs=exploration.friction_per_fs,
            committee_interval_steps=exploration.committee_every_steps,
        )


def resolve_options(options: WalkerOptions | None, fields: Mapping[str, Any]) -> WalkerOptions:
    """``options`` with ``fields`` replaced, or the options made of ``fields`` alone.

    Raises
    ------
    TypeError
        A field that :class:`WalkerOptions` does not have, or a missing one.
    """
    if options is None:
        return WalkerOptions(**fields)
    return replace(options, **fields) if fields else options


def check_walker_arguments(atoms: Atoms, options: WalkerOptions, temperature_K: float) -> None:
    """Raise ExplorationError for arguments MD cannot run with."""
    problems = []
    if len(atoms) == 0:
        problems.append("no atoms")
    if not (math.isfinite(temperature_K) and temperature_K > 0):
        problems.append(f"temperature_K must be > 0, got {temperature_K}")
    if options.steps < 0:
        problems.append(f"steps must be >= 0, got {options.steps}")
    if not (math.isfinite(options.timestep_fs) and options.timestep_fs > 0):
        problems.append(f"timestep_fs must be > 0, got {options.timestep_fs}")
    sample_every, committee_every = options.sample_interval_steps, options.committee_every_steps
    if sample_every < 1:
        problems.append(f"sample_interval_steps must be >= 1, got {sample_every}")
    elif committee_every < 1 or sample_every % committee_every:
        problems.append(
            f"committee_interval_steps must be >= 1 and divide sample_interval_steps "
            f"({sample_every}), got {committee_every}"
        )
    if not options.max_temperature_factor > 1:
        problems.append(f"max_temperature_factor must be > 1, got {options.max_temperature_factor}")
    if not options.friction_per_fs > 0:
        problems.append(f"friction_per_fs must be > 0, got {options.friction_per_fs}")
    if options.ensemble not in ENSEMBLES:
        problems.append(f"ensemble must be one of {ENSEMBLES}, got {options.ensemble!r}")
    if options.ensemble == "npt":
        if not atoms.pbc.all():
            problems.append(f"NPT needs a 3D-periodic cell, got pbc={atoms.pbc.tolist()}")
        if not options.barostat_time_fs > 0:
            problems.append(f"barostat_time_fs must be > 0, got {options.barostat_time_fs}")
    if problems:
        raise ExplorationError("cannot run walker: " + "; ".join(problems))
