"""Which explored frames are worth a label, and the sanity checks before it (``selection``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from alflow.config.base import Strict

__all__ = ["SanityConfig", "SelectionConfig"]


class SanityConfig(Strict):
    """Physical sanity checks applied before any DFT job is queued."""

    min_distance_A: float | None = Field(
        default=None,
        gt=0,
        description="Closest allowed pair (Å) for walkers and DFT; None: min_distance_fraction "
        "× the shortest distance of that element pair in the training data.",
    )
    min_distance_fraction: float = Field(
        default=0.85, gt=0, le=1, description="See min_distance_A."
    )
    max_atoms: int = Field(default=500, ge=1)
    min_volume_per_atom_A3: float = Field(default=5.0, gt=0)
    max_volume_per_atom_A3: float = Field(default=100.0, gt=0)


class SelectionConfig(Strict):
    """Which explored frames are worth a DFT label."""

    strategy: Literal["committee", "random"] = Field(
        default="committee",
        description="committee: the trust window, diversity and audit rules below; random: "
        "the same budget of sane explored frames drawn at random (the baseline of "
        "benchmarks/campaign_efficiency.py).",
    )
    trust_lo_eV_A: float = Field(
        default=0.05,
        ge=0,
        description="Max per-atom force deviation below which a frame is accurate.",
    )
    trust_hi_eV_A: float = Field(
        default=0.5,
        gt=0,
        description="Above it a frame is failed (unphysical), not labeled.",
    )
    max_per_iteration: int = Field(
        default=8, ge=1, description="DFT budget per iteration (audit frames included)."
    )
    deviation: Literal["absolute", "relative"] = Field(
        default="absolute",
        description="absolute: max per-atom force deviation (eV/Å, DP-GEN's max_devi_f); "
        "relative: that divided by (mean per-atom |F| of the committee mean + relative_eps_eV_A).",
    )
    relative_eps_eV_A: float = Field(
        default=1.0,
        gt=0,
        description="Force added to the denominator of the relative form (eV/Å).",
    )
    trust_lo_relative: float = Field(
        default=0.05,
        ge=0,
        description="Lower bound of the window in the relative form.",
    )
    trust_hi_relative: float = Field(
        default=0.5, gt=0, description="Upper bound of the window in the relative form."
    )
    calibrate: bool = Field(
        default=True,
        description="Set the window each iteration from the fit deviation → true force error "
        "on the campaign's labeled frames; the fixed window is the fallback.",
    )
    target_force_error_eV_A: float = Field(
        default=0.15,
        gt=0,
        description="Largest per-atom force error (eV/Å) a frame may have to count as accurate "
        "(calibration target; same statistic as the max deviation).",
    )
    calibration_min_points: int = Field(
        default=4,
        ge=3,
        description="Labeled frames needed before the window is calibrated (4: from the "
        "second iteration on; measured better or equal to 8 in benchmarks/data_efficiency.py).",
    )
    calibration_min_spearman: float = Field(
        default=0.3,
        ge=-1,
        le=1,
        description="Below this rank correlation the fit is not trusted: fixed window.",
    )
    calibration_confidence: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Probability that a frame at the calibrated trust_lo has an error below the "
        "target (0.5: the fitted median; higher is more conservative).",
    )
    calibrated_hi_factor: float = Field(
        default=10.0,
        gt=1,
        description="Calibrated trust_hi = this × calibrated trust_lo.",
    )
    calibration_clamp_factor: float = Field(
        default=10.0,
        ge=1,
        description="The calibrated trust_lo stays within [fixed lo / f, fixed lo × f].",
    )
    audit_per_iteration: int = Field(
        default=2,
        ge=0,
        description="Random frames from the accurate class labeled each iteration (at most half "
        "the budget) to calibrate below the window.",
    )
    diversity: Literal["fps", "none"] = Field(
        default="fps",
        description="fps: farthest-point sampling on structure descriptors.",
    )
    descriptor: Literal["auto", "mace", "rdf"] = Field(
        default="auto",
        description="FPS descriptors: mace (mean invariant node features of the committee's "
        "first member), rdf (species-resolved radial distribution), auto: mace if the "
        "committee loads, else rdf.",
    )
    rescore_pending: bool = Field(
        default=True,
        description="Re-score frames of earlier iterations still queued for DFT with the new "
        "committee and drop those now accurate.",
    )
    sanity: SanityConfig = SanityConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _window(self) -> SelectionConfig:
        if self.trust_hi_eV_A <= self.trust_lo_eV_A:
            raise ValueError("trust_hi_eV_A must be larger than trust_lo_eV_A")
        if self.trust_hi_relative <= self.trust_lo_relative:
            raise ValueError("trust_hi_relative must be larger than trust_lo_relative")
        return self

    def fixed_window(self) -> tuple[float, float]:
        """The configured (uncalibrated) window in the units of ``deviation``."""
        if self.deviation == "relative":
            return self.trust_lo_relative, self.trust_hi_relative
        return self.trust_lo_eV_A, self.trust_hi_eV_A
