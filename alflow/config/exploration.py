"""Molecular dynamics driven by the committee (``exploration``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from alflow.config.base import Strict

__all__ = ["ExplorationConfig"]


class ExplorationConfig(Strict):
    """Molecular dynamics driven by the committee."""

    walkers: int = Field(default=4, ge=1, description="Walkers per iteration.")
    temperatures_K: list[float] = Field(default=[300.0], min_length=1)
    ensemble: Literal["nvt", "npt"] = "nvt"
    pressures_GPa: list[float] = Field(default=[0.0], min_length=1, description="NPT only.")
    steps: int = Field(default=500, ge=1, description="MD steps per walker.")
    timestep_fs: float = Field(default=2.0, gt=0, le=10)
    friction_per_fs: float = Field(default=0.01, gt=0, description="Langevin friction.")
    sample_interval_steps: int = Field(default=10, ge=1, description="Frames saved every N steps.")
    committee_interval_steps: int | None = Field(
        default=None,
        ge=1,
        description="Full committee evaluated every N steps (uncertainty checked there); "
        "must divide sample_interval_steps. None: sample_interval_steps.",
    )
    propagator: Literal["member", "mean"] = Field(
        default="member",
        description="member: MD forces of one member (walker w uses member w mod M), full "
        "committee only every committee_interval_steps; mean: committee mean at every step "
        "(M times the cost).",
    )
    seed: int = 0
    walkers_per_job: int = Field(
        default=1,
        ge=1,
        description="Walkers advanced together by one md job, their structures evaluated in "
        "one batched model call per step.",
    )
    max_temperature_factor: float = Field(
        default=3.0,
        gt=1,
        description="Stop a walker above this × its target temperature.",
    )
    start_from_labeled: bool = Field(
        default=True,
        description="Also start walkers from structures labeled in earlier iterations.",
    )

    @property
    def committee_every_steps(self) -> int:
        """Steps between full committee evaluations (resolves the None default)."""
        return self.committee_interval_steps or self.sample_interval_steps

    @model_validator(mode="after")
    def _committee_interval(self) -> ExplorationConfig:
        if self.sample_interval_steps % self.committee_every_steps:
            raise ValueError(
                f"committee_interval_steps ({self.committee_interval_steps}) must divide "
                f"sample_interval_steps ({self.sample_interval_steps}): frames are saved "
                "only where the full committee was evaluated"
            )
        return self
