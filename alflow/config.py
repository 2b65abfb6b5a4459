"""What a campaign computes: the strict, immutable campaign configuration.

A campaign file is YAML. Every key is checked: an unknown key, a value of the
wrong type or a quantity without its unit in the name (``timestep`` instead of
``timestep_fs``) is a :class:`~alflow.errors.ConfigError` that names the key
and the file. The validated configuration is stored with every result, so a
result can always be traced to the exact settings that produced it.

Examples
--------
>>> from alflow.config import CampaignConfig
>>> cfg = CampaignConfig.model_validate(
...     {"name": "demo", "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}}
... )
>>> cfg.labeling.oracle.code
'emt'
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from alflow.errors import ConfigError

__all__ = [
    "BulkStructure",
    "CampaignConfig",
    "CommitteeConfig",
    "EMTOracle",
    "ExplorationConfig",
    "FileStructure",
    "FinalFitConfig",
    "GPAWOracle",
    "InitialConfig",
    "LabelingConfig",
    "LoopConfig",
    "MaceModelConfig",
    "QueueResources",
    "SanityConfig",
    "SelectionConfig",
    "ShortRangeConfig",
    "TrainingConfig",
    "ValidationConfig",
    "config_hash",
    "load_campaign",
]


class Strict(BaseModel):
    """Base of all configuration models: unknown keys forbidden, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- initial


class BulkStructure(Strict):
    """A crystal built with :func:`ase.build.bulk`."""

    kind: Literal["bulk"] = "bulk"
    symbol: str = Field(description="Chemical symbol or formula, e.g. 'Al' or 'NaCl'.")
    crystalstructure: str | None = Field(
        default=None, description="fcc, bcc, hcp, diamond, rocksalt, ...; None: ASE's reference."
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


class ShortRangeConfig(Strict):
    """Close-contact seed frames labeled before iteration 0 (alflow.contacts)."""

    dimer_distance_factors: tuple[float, ...] = Field(
        default=(0.7, 0.85, 1.0, 1.2),
        description="Isolated dimers of every element pair at these × the sum of covalent "
        "radii; () for none.",
    )
    dimer_vacuum_A: float = Field(default=6.0, gt=0, description="Vacuum around a dimer (Å).")
    squeeze_factors: tuple[float, ...] = Field(
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

    @field_validator("dimer_distance_factors", "squeeze_factors")
    @classmethod
    def _fractions(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.3 <= v <= 2.0 for v in values):
            raise ValueError("factors must lie between 0.3 and 2.0")
        return values


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
        default=0.02, ge=0, lt=0.5, description="Largest random linear strain of the seed copies."
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


# --------------------------------------------------------------------------- committee


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
        default="continue", description="continue: start from the previous iteration's member."
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


# --------------------------------------------------------------------------- exploration


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
        default=3.0, gt=1, description="Stop a walker above this × its target temperature."
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


# --------------------------------------------------------------------------- selection


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
        default=0.5, gt=0, description="Above it a frame is failed (unphysical), not labeled."
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
        default=1.0, gt=0, description="Force added to the denominator of the relative form (eV/Å)."
    )
    trust_lo_relative: float = Field(
        default=0.05, ge=0, description="Lower bound of the window in the relative form."
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
        default=10.0, gt=1, description="Calibrated trust_hi = this × calibrated trust_lo."
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
        default="fps", description="fps: farthest-point sampling on structure descriptors."
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


# --------------------------------------------------------------------------- labeling


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
        default=0.5, ge=0, le=1, description="Stop the campaign when more of an iteration fails."
    )


# --------------------------------------------------------------------------- loop


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
        default=None, ge=1, description="Training epochs; None: 2 × committee.training.epochs."
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
        default=0.06, gt=0, lt=0.3, description="Largest linear strain of the E(V) scan."
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
        default=32, ge=1, description="The stability cell is repeated to at least this many atoms."
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
        default=3, ge=0, description="Reference-labelled supercell frames per temperature."
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


class CampaignConfig(Strict):
    """Everything a campaign computes. Stored with every result."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    description: str = ""
    initial: InitialConfig
    committee: CommitteeConfig = CommitteeConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    selection: SelectionConfig = SelectionConfig()
    labeling: LabelingConfig = LabelingConfig()
    loop: LoopConfig = LoopConfig()
    final: FinalFitConfig = FinalFitConfig()
    validation: ValidationConfig = ValidationConfig()
    base_dir: str = Field(
        default=".", description="Directory that relative paths refer to (set by load_campaign)."
    )


def config_hash(config: BaseModel | dict[str, Any]) -> str:
    """Return a short, stable sha256 of a configuration or parameter dict.

    Parameters
    ----------
    config
        A pydantic model or a JSON-serialisable dict.

    Returns
    -------
    str
        First 16 hex digits of the sha256 of the canonical JSON.
    """
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields a location could have meant (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [
            a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        current = candidates[0] if candidates else None
    return list(getattr(current, "model_fields", {}) or [])


def _describe(error: dict[str, Any], source: str) -> str:
    """One line per validation error: file, dotted key and what is wrong."""
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "<top>"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        names = _field_names(CampaignConfig, loc)
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
        hint = [n for n in names if n.startswith(f"{loc[-1]}_")] or close
        message = "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else "")
    return f"{source}: {key}: {message}"


def validate_campaign(data: Any, source: str = "<campaign>") -> CampaignConfig:
    """Validate a campaign mapping and turn pydantic's errors into a ConfigError.

    Parameters
    ----------
    data
        The parsed YAML (a mapping).
    source
        Where it came from, for the messages.

    Returns
    -------
    CampaignConfig

    Raises
    ------
    ConfigError
        Listing every invalid key.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of campaign keys, got {type(data).__name__}"
        )
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, source) for e in exc.errors()]
        raise ConfigError("; ".join(lines)) from None


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file.

    Parameters
    ----------
    path
        The campaign file. Relative structure paths inside it are relative to
        its directory.

    Returns
    -------
    CampaignConfig

    Raises
    ------
    ConfigError
        The file is missing, is not valid YAML, or has invalid keys.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read campaign file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if isinstance(data, dict) and "base_dir" not in data:
        data = {**data, "base_dir": str(path.resolve().parent)}
    return validate_campaign(data, str(path))
