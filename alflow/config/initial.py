"""Starting structures and the seed training set (``initial``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from alflow.config.base import Strict

__all__ = [
    "BulkStructure",
    "FileStructure",
    "InitialConfig",
    "ShortRangeConfig",
    "StructureSpec",
]


class BulkStructure(Strict):
    """A crystal built with :func:`ase.build.bulk`."""

    kind: Literal["bulk"] = "bulk"
    symbol: str = Field(description="Chemical symbol or formula, e.g. 'Al' or 'NaCl'.")
    crystalstructure: str | None = Field(
        default=None,
        description="fcc, bcc, hcp, diamond, rocksalt, ...; None: ASE's reference.",
    )
    a_A: float | None = Field(default=None, gt=0, description="Lattice constant (Å).")
    cubic: bool = Field(default=True, description="Conventional cubic cell.")
    supercell: tuple[int, int, int] = Field(default=(1, 1, 1), description="Repetitions.")


class FileStructure(Strict):
    """Structures read with :func:`ase.io.read` (any format ASE reads)."""

    kind: Literal["file"] = "file"
    path: str = Field(description="Path, relative to the campaign file.")
    index: str = Field(default=":", description="ASE index string: ':' reads all frames.")
    supercell: tuple[int, int, int] = Field(default=(1, 1, 1), description="Repetitions.")


StructureSpec = Annotated[BulkStructure | FileStructure, Field(discriminator="kind")]

#: A distance factor of the short-range seed frames (× a reference distance).
DistanceFactor = Annotated[float, Field(ge=0.3, le=2.0)]


class ShortRangeConfig(Strict):
    """Close-contact seed frames labeled before iteration 0 (alflow.contacts)."""

    dimer_distance_factors: tuple[DistanceFactor, ...] = Field(
        default=(0.7, 0.85, 1.0, 1.2),
        description="Isolated dimers of every element pair at these × the sum of covalent "
        "radii; () for none.",
    )
    dimer_vacuum_A: float = Field(default=6.0, gt=0, description="Vacuum around a dimer (Å).")
    squeeze_factors: tuple[DistanceFactor, ...] = Field(
        default=(0.7, 0.8),
        description="Copies of each structure with one nearest pair per element pair pushed "
        "to these × its distance; () for none.",
    )
    loss_weight: float = Field(
        default=0.1,
        ge=0,
        description="MACE loss weight of these frames (config_weight): they set the "
        "repulsion without taking the model's capacity from the bulk.",
    )


class InitialConfig(Strict):
    """Starting structures and the seed training set made from them."""

    structures: list[StructureSpec] = Field(min_length=1)
    n_rattled: int = Field(
        default=4,
        ge=0,
        description="Rattled/strained copies per structure labeled before iteration 0.",
    )
    rattle_stdev_A: float = Field(default=0.05, ge=0, description="Gaussian displacement (Å).")
    strain_max: float = Field(
        default=0.02,
        ge=0,
        lt=0.5,
        description="Largest random linear strain of the seed copies.",
    )
    n_holdout: int = Field(
        default=4,
        ge=0,
        description="Rattled copies per structure labeled as a held-out test set (never trained on).",
    )
    holdout_rattle_factor: float = Field(
        default=1.0,
        gt=0,
        description="Held-out copies are rattled by this × rattle_stdev_A (own random stream).",
    )
    short_range: ShortRangeConfig = ShortRangeConfig()
