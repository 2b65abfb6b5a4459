"""The reference method that labels frames (``labeling``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from alflow.config.base import Strict

__all__ = ["EMTOracle", "GPAWOracle", "LabelingConfig", "OracleSpec", "QueueResources"]


class QueueResources(Strict):
    """Resources of one DFT Firework when launched through a queue (qlaunch -r)."""

    nodes: int = Field(default=1, ge=1)
    cores: int = Field(default=2, ge=1, description="MPI ranks of one DFT job.")
    walltime_min: int = Field(default=60, ge=1)


class EMTOracle(Strict):
    """ASE's EMT potential as a cheap stand-in for DFT (Al Cu Ni Pd Ag Pt Au, H C N O)."""

    code: Literal["emt"] = "emt"


class GPAWOracle(Strict):
    """GPAW plane-wave or LCAO DFT."""

    code: Literal["gpaw"] = "gpaw"
    mode: Literal["pw", "lcao"] = "pw"
    ecut_eV: float = Field(default=300.0, gt=50, description="Plane-wave cutoff (pw).")
    basis: str = Field(default="dzp", description="LCAO basis (lcao).")
    xc: str = "PBE"
    kpts: tuple[int, int, int] | None = Field(default=None, description="Explicit k-point mesh.")
    kpoint_density_per_A: float = Field(
        default=3.0, gt=0, description="k-points per Å⁻¹ when kpts is not given."
    )
    smearing: Literal["fermi-dirac", "marzari-vanderbilt", "methfessel-paxton"] = "fermi-dirac"
    smearing_width_eV: float = Field(default=0.1, ge=0)
    spinpol: bool = False
    initial_magmoms: dict[str, float] = Field(default_factory=dict, description="Per element (μB).")
    convergence_energy_eV: float = Field(default=5e-4, gt=0, description="Per valence electron.")
    convergence_density: float = Field(default=1e-4, gt=0)
    maxiter: int = Field(default=333, ge=1)
    max_retries: int = Field(
        default=2, ge=0, description="Retries with gentler settings after SCF failure."
    )


OracleSpec = Annotated[EMTOracle | GPAWOracle, Field(discriminator="code")]


class LabelingConfig(Strict):
    """The reference method that labels frames."""

    oracle: OracleSpec = EMTOracle()
    queue: QueueResources = QueueResources()
    max_failed_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Stop the campaign when more of an iteration fails.",
    )
