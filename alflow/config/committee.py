"""The committee of MACE models and how its members are trained (``committee``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from alflow.config.base import Strict

__all__ = ["CommitteeConfig", "MaceModelConfig", "TrainingConfig"]


class MaceModelConfig(Strict):
    """MACE architecture (see mace-torch's run_train options)."""

    channels: int = Field(default=32, ge=8, description="Hidden channels (num_channels).")
    max_L: int = Field(default=0, ge=0, le=3, description="Largest L of equivariant messages.")
    r_max_A: float = Field(default=5.0, gt=1.0, description="Cutoff radius (Å).")
    num_interactions: int = Field(default=2, ge=1, le=4)
    correlation: int = Field(default=2, ge=1, le=4)


class TrainingConfig(Strict):
    """How each committee member is trained."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=4, ge=1, description="Clamped to the training-set size.")
    lr: float = Field(default=0.01, gt=0)
    energy_weight: float = Field(default=1.0, ge=0)
    forces_weight: float = Field(default=100.0, ge=0)
    stress_weight: float = Field(
        default=1000.0,
        ge=0,
        description="MACE's stress loss weight (stress in eV/Å³; 0: off). 1000 puts the "
        "lattice constant within 0.01 Å where 0 missed it by 0.03-0.08 Å (docs/committee.md).",
    )
    valid_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    dtype: Literal["float32", "float64"] = "float32"
    pair_repulsion: bool = Field(
        default=True,
        description="ZBL repulsive prior below the shortest pair of the training data "
        "(alflow.committee.repulsion), put into every trained model.",
    )
    ema: bool = Field(default=True, description="Exponential moving average of the weights.")
    restart: Literal["continue", "scratch"] = Field(
        default="continue",
        description="continue: start from the previous iteration's member.",
    )
    bootstrap: bool = Field(default=False, description="Each member sees a bootstrap resample.")


class CommitteeConfig(Strict):
    """The committee of MACE models."""

    members: int = Field(default=4, ge=2, description="Committee size M.")
    seed: int = Field(default=0, description="Member m uses seed + m.")
    kind: Literal["independent", "shared_body"] = Field(
        default="independent",
        description="independent: M separately trained MACE models. shared_body: member 0 "
        "trained as usual, members 1..M-1 its frozen body with their own readouts, the body "
        "evaluated once per call (docs/committee.md, 'Committee kinds').",
    )
    foundation_model: Path | None = Field(
        default=None,
        description="A local MACE model file (MACE-MP, or a memberMM.model exported by another "
        "campaign; relative: to the campaign file's directory) every member is fine-tuned from "
        "in iteration 0 and whenever training.restart is scratch (docs/committee.md); None: "
        "train from scratch.",
    )
    model: MaceModelConfig = MaceModelConfig()
    training: TrainingConfig = TrainingConfig()
