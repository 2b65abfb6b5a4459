"""When a campaign stops and what follows: ``loop``, ``final`` and ``validation``."""

from __future__ import annotations

from pydantic import Field

from alflow.config.base import Strict

__all__ = ["FinalFitConfig", "LoopConfig", "ValidationConfig"]


class LoopConfig(Strict):
    """When the campaign stops."""

    max_iterations: int = Field(default=5, ge=1)
    max_dft_labels: int = Field(default=200, ge=1, description="Total DFT budget (seed included).")
    converged_accurate_fraction: float = Field(
        default=0.97,
        gt=0,
        le=1,
        description="Converged when this fraction of frames is accurate...",
    )
    target_force_rmse_eV_A: float = Field(
        default=0.1,
        gt=0,
        description="...and the committee's force RMSE on new labels is below this.",
    )
    converged_window_iterations: int = Field(
        default=1,
        ge=1,
        description="The accurate fraction is pooled over this many last iterations "
        "(the campaign cannot converge before it has run that many).",
    )


class FinalFitConfig(Strict):
    """The deploy committee, trained on every usable label once the campaign ends."""

    epochs: int | None = Field(
        default=None,
        ge=1,
        description="Training epochs; None: 2 × committee.training.epochs.",
    )
    validate_after: bool = Field(
        default=True, description="Run `alflow validate` by itself after the final fit."
    )


class ValidationConfig(Strict):
    """How `alflow validate` judges the final committee (see docs/validation.md).

    Fields may be added here but never removed or renamed: a stored campaign
    config is validated with this class when it is read back.
    """

    dimer_min_A: float = Field(default=0.5, gt=0, description="Shortest dimer distance (Å).")
    dimer_points: int = Field(default=40, ge=5, description="Committee points on each curve.")
    dimer_reference_points: int = Field(
        default=4,
        ge=0,
        description="Reference-method points on each dimer curve, from max(dimer_min_A, 0.6 × "
        "the sum of covalent radii) to the cutoff (0: none; 1 is raised to 2).",
    )
    eos_strain_max: float = Field(
        default=0.06,
        gt=0,
        lt=0.3,
        description="Largest linear strain of the E(V) scan.",
    )
    eos_points: int = Field(default=9, ge=5, description="Committee volumes of the E(V) scan.")
    eos_reference_points: int = Field(
        default=5,
        ge=0,
        description="Reference-method volumes (0: committee only; fewer than 5 are raised to 5).",
    )
    eos_a0_tolerance_A: float = Field(
        default=0.02,
        gt=0,
        description="The committee's lattice constant passes within this of the reference's (Å).",
    )
    md_time_ps: float = Field(default=10.0, gt=0, description="Length of the stability run.")
    md_min_atoms: int = Field(
        default=32,
        ge=1,
        description="The stability cell is repeated to at least this many atoms.",
    )
    md_distance_tolerance_A: float = Field(
        default=0.3,
        ge=0,
        description="MD stays physical while no pair comes closer than the training data's "
        "shortest distance for that pair minus this (Å); closer stops the run.",
    )
    md_temperature_factor: float = Field(
        default=1.25,
        gt=1,
        description="The mean temperature of the run's last half lies within target / f and "
        "target × f.",
    )
    transfer_frames: int = Field(
        default=3,
        ge=0,
        description="Reference-labelled supercell frames per temperature.",
    )
    transfer_min_atoms: int = Field(
        default=32, ge=1, description="Transfer cells hold at least this many atoms."
    )
    transfer_equilibration_ps: float = Field(
        default=0.5, ge=0, description="Committee MD before the first transfer frame."
    )
    transfer_spacing_ps: float = Field(
        default=0.2, gt=0, description="Committee MD between two transfer frames."
    )
    transfer_strain: float = Field(
        default=0.02,
        ge=0,
        lt=0.3,
        description="Linear strain of one extra frame per temperature (the last MD frame "
        "stretched uniformly; 0: none).",
    )
    seed: int = Field(default=0, description="Seed of the stability and transfer MD.")
