"""Train one MACE committee member in its own process.

:func:`train_member` writes the labeled frames as extended XYZ
(:mod:`alflow.committee.training_set`), builds mace-torch's ``run_train``
command line from the campaign's :class:`~alflow.config.MaceModelConfig` and
:class:`~alflow.config.TrainingConfig` (:mod:`alflow.committee.mace_cli`),
and runs it in one child process per attempt, the member's MACE job
(:mod:`alflow.committee.mace_job` via :mod:`alflow.committee.mace_run`:
the previous model's prior taken off, ``run_train``, the new prior put on),
once more with ``seed + 1000`` after a NaN divergence. MACE changes
process-wide state (torch's default dtype, logging handlers,
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), so it never runs in the caller's
process; this module imports neither mace nor torch.

``--foundation_model PATH`` with a local file (mace-torch 0.3.16) loads its
architecture and weights (no download; multi-head fine-tuning is switched off
for a file); the first validation loss of the continued run equals the
previous model's best one.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from alflow.committee.foundation import FoundationStart, foundation_argv, prepare_foundation
from alflow.committee.mace_cli import MemberE0s, build_train_argv, member_e0s
from alflow.committee.mace_cli import e0s_argument as _e0s_argument  # noqa: F401 (tests use it)
from alflow.committee.mace_job import MaceJob
from alflow.committee.mace_run import (
    DivergedError,
    clean_outputs,
    log_tail,
    mace_version,
    parse_error_table,
    read_outcome,
)
from alflow.committee.mace_run import run_mace as _run_mace  # the tests monkeypatch it here
from alflow.committee.repulsion import repulsion_record
from alflow.committee.training_set import (
    ENERGY_KEY,
    FORCES_KEY,
    STRESS_KEY,
    TRAIN_FILE,
    VALID_FILE,
    check_frames,
    split_frames,
    write_training_set,
)
from alflow.config import MaceModelConfig, TrainingConfig
from alflow.errors import TrainingError
from alflow.workcache import fingerprint, load_cached, save_cached, sha256_file

__all__ = [
    "ENERGY_KEY",
    "FORCES_KEY",
    "STRESS_KEY",
    "TrainedMember",
    "build_train_argv",
    "parse_error_table",
    "split_frames",
    "train_member",
]

logger = logging.getLogger(__name__)

RETRY_SEED_OFFSET = 1000


@dataclass(frozen=True)
class TrainedMember:
    """One trained committee member.

    Attributes
    ----------
    model_path
        The best-validation float model written by MACE (``<name>.model``).
    seed
        The seed the model was finally trained with (``seed + 1000`` after a
        NaN retry).
    n_train, n_valid
        Frames in the training and validation sets.
    valid_rmse_energy_meV_atom
        Energy RMSE per atom on the validation set (meV/atom), None if MACE
        did not report it.
    valid_rmse_forces_meV_A
        Force-component RMSE on the validation set (meV/Å), None if not reported.
    wall_s
        Wall time of the whole call (s), retries included.
    hyperparameters
        JSON-serialisable record of every setting that produced the model
        (argv included), for the store.
    """

    model_path: Path
    seed: int
    n_train: int
    n_valid: int
    valid_rmse_energy_meV_atom: float | None
    valid_rmse_forces_meV_A: float | None
    wall_s: float
    hyperparameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _MemberSettings:
    """What :func:`train_member` was asked for (besides the frames and their starts)."""

    model: MaceModelConfig
    training: TrainingConfig
    seed: int
    workdir: Path
    name: str
    device: str
    threads: int


@dataclass(frozen=True)
class _MemberPlan:
    """Everything the MACE runs of one member need (made by :func:`_plan`).

    ``previous_source`` is the previous model as given, ``previous_model``
    the start file ``--foundation_model`` reads (written by the job's
    ``strip`` when the prior is on), ``repulsion`` the prior's record
    (:func:`~alflow.committee.repulsion.repulsion_record`) or None.
    """

    settings: _MemberSettings
    train_idx: np.ndarray
    valid_idx: np.ndarray
    e0s: MemberE0s
    previous_source: Path | None
    previous_model: Path | None
    foundation: FoundationStart | None
    repulsion: dict[str, Any] | None

    def argv(self, run_seed: int) -> list[str]:
        """``run_train`` options of a run with ``--seed run_seed``."""
        settings, fstart = self.settings, self.foundation
        return build_train_argv(
            model=settings.model,
            training=settings.training,
            seed=run_seed,
            name=settings.name,
            n_train=len(self.train_idx),
            n_valid=len(self.valid_idx),
            e0s=self.e0s.argument,
            previous_model=self.previous_model if fstart is None else fstart.model_path,
            device=settings.device,
            extra_argv=foundation_argv(fstart) if fstart is not None else (),
        )

    def job(self, run_seed: int) -> MaceJob:
        """The member's MACE job of a run with ``--seed run_seed``."""
        strip = None
        if self.previous_source is not None and self.settings.training.pair_repulsion:
            strip = (str(self.previous_source), str(self.previous_model))
        return MaceJob(
            argv=self.argv(run_seed),
            workdir=str(self.settings.workdir),
            name=self.settings.name,
            strip=strip,
            single_head=self.foundation is not None and self.foundation.replay_path is not None,
            radii_A=self.repulsion["radii_A"] if self.repulsion is not None else None,
        )


def _previous_start(previous_model: Path, settings: _MemberSettings) -> Path:
    """The file a continued run starts from, out of the workdir's way.

    With the prior on, the job writes it (the previous model without its
    prior: the prior follows this run's data); else it is a copy, or the
    file itself when it lies outside the workdir.
    """
    workdir = settings.workdir
    previous_model = Path(previous_model).resolve()
    if not previous_model.is_file():
        raise TrainingError(f"previous model not found: {previous_model}")
    kept = workdir / f"{settings.name}.previous.model"
    if settings.training.pair_repulsion:
        return kept
    if previous_model.parent == workdir or workdir in previous_model.parents:
        # this run cleans its workdir first: keep the previous model out of the way
        if previous_model != kept:
            shutil.copyfile(previous_model, kept)
        return kept
    return previous_model


def _plan(
    frames: Sequence[Atoms],
    settings: _MemberSettings,
    e0s_eV: Mapping[str, float] | None,
    previous_model: Path | None,
    foundation: Path | None,
) -> _MemberPlan:
    """Write the training set into the (existing) workdir, prepare the start, choose the E0s."""
    train_idx, valid_idx = write_training_set(
        frames, settings.training, settings.seed, settings.workdir
    )
    source = Path(previous_model).resolve() if previous_model is not None else None
    start = _previous_start(source, settings) if source is not None else None
    symbols = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    fstart = None
    if foundation is not None and start is None:
        fstart = prepare_foundation(
            Path(foundation), workdir=settings.workdir, name=settings.name, elements=symbols,
            model=settings.model, training=settings.training, seed=settings.seed,
            n_train=len(train_idx),
        )  # fmt: skip
    repulsion = None
    if settings.training.pair_repulsion:
        repulsion = repulsion_record(frames, settings.model.r_max_A)
    return _MemberPlan(
        settings=settings,
        train_idx=train_idx,
        valid_idx=valid_idx,
        e0s=member_e0s(symbols, e0s_eV, fstart, source),
        previous_source=source,
        previous_model=start,
        foundation=fstart,
        repulsion=repulsion,
    )


def _hyperparameters(plan: _MemberPlan) -> dict[str, Any]:
    """The member's record before its runs (``argv``, ``log_path`` and errors come after)."""
    return {
        "model": plan.settings.model.model_dump(mode="json"),
        "training": plan.settings.training.model_dump(mode="json"),
        "seed": plan.settings.seed,
        "n_train": len(plan.train_idx),
        "n_valid": len(plan.valid_idx),
        "valid_indices": [int(i) for i in plan.valid_idx],
        "e0s": plan.e0s.source,
        "e0s_eV": plan.e0s.values_eV,
        "previous_model": str(plan.previous_model) if plan.previous_model is not None else None,
        "foundation": plan.foundation.record() if plan.foundation is not None else None,
        "device": plan.settings.device,
        "threads": plan.settings.threads,
        "mace_version": mace_version(),
        "retried_seed": None,
    }


def _file_sha256(path: Path) -> str | None:
    """sha256 of a file, None if it does not exist."""
    try:
        return sha256_file(Path(path))
    except OSError:
        return None


def _cache_inputs(plan: _MemberPlan, argv: list[str], version: str | None) -> str:
    """Fingerprint of everything a trained member depends on (its result cache's key)."""
    fstart, workdir = plan.foundation, plan.settings.workdir
    return fingerprint(
        (workdir / TRAIN_FILE).read_bytes(),
        (workdir / VALID_FILE).read_bytes(),
        argv,
        _file_sha256(plan.previous_source) if plan.previous_source is not None else None,
        (fstart.info.sha256, fstart.replay_path and _file_sha256(fstart.replay_path))
        if fstart is not None
        else None,
        version,
    )


def _attempt(plan: _MemberPlan, run_seed: int) -> tuple[Path, dict[str, float], Path, list[str]]:
    """One MACE job with ``--seed run_seed``: (model path, validation errors, log path, argv).

    Raises DivergedError on NaN losses and TrainingError on other failures.
    """
    workdir, name, job = plan.settings.workdir, plan.settings.name, plan.job(run_seed)
    clean_outputs(workdir, name)
    log_path = workdir / f"{name}.train.log"
    returncode = _run_mace(job, log_path, plan.settings.threads)
    model_path, errors = read_outcome(job, returncode, log_path)
    return model_path, errors, log_path, job.argv


def _train_with_retry(
    plan: _MemberPlan, hyperparameters: dict[str, Any]
) -> tuple[int, Path, dict[str, float], Path, list[str]]:
    """Run MACE, once more with ``seed + 1000`` after a divergence: (run seed, :func:`_attempt`)."""
    workdir, name, seed = plan.settings.workdir, plan.settings.name, plan.settings.seed
    try:
        return (seed, *_attempt(plan, seed))
    except DivergedError as exc:
        failed_log = workdir / f"{name}.train.seed{seed}.log"
        (workdir / f"{name}.train.log").replace(failed_log)
        run_seed = seed + RETRY_SEED_OFFSET
        logger.warning(
            "%s; retrying once with seed %d (failed log kept: %s)", exc, run_seed, failed_log
        )
        hyperparameters["retried_seed"] = run_seed
    try:
        return (run_seed, *_attempt(plan, run_seed))
    except DivergedError as exc2:
        log_path = workdir / f"{name}.train.log"
        raise TrainingError(
            f"MACE training of '{name}' diverged twice (seeds {seed}, {run_seed}); "
            f"log: {log_path}\n--- last lines ---\n{log_tail(log_path)}"
        ) from exc2


def _finished_member(
    plan: _MemberPlan, hyperparameters: dict[str, Any], start_s: float
) -> TrainedMember:
    """Train (:func:`_train_with_retry`: the job also finishes the model) and record it."""
    run_seed, model_path, errors, log_path, argv = _train_with_retry(plan, hyperparameters)
    if plan.repulsion is not None:
        hyperparameters["repulsion"] = plan.repulsion
    hyperparameters["argv"] = argv
    hyperparameters["log_path"] = str(log_path)
    hyperparameters["valid_errors"] = errors
    return TrainedMember(
        model_path=model_path,
        seed=run_seed,
        n_train=len(plan.train_idx),
        n_valid=len(plan.valid_idx),
        valid_rmse_energy_meV_atom=errors.get("RMSE E / meV / atom"),
        valid_rmse_forces_meV_A=errors.get("RMSE F / meV / A"),
        wall_s=time.perf_counter() - start_s,
        hyperparameters=hyperparameters,
    )


def train_member(
    frames: Sequence[Atoms],
    *,
    model: MaceModelConfig,
    training: TrainingConfig,
    seed: int,
    workdir: Path,
    e0s_eV: Mapping[str, float] | None = None,
    previous_model: Path | None = None,
    foundation: Path | None = None,
    device: str = "cpu",
    threads: int = 1,
    name: str = "member",
) -> TrainedMember:
    """Train one MACE committee member on labeled frames.

    Parameters
    ----------
    frames
        Labeled configurations: ``atoms.calc`` is a SinglePointCalculator
        with ``energy`` (eV) and ``forces`` (eV/Å), optionally ``stress``
        (eV/Å³, used for 3D-periodic frames).
    model, training
        Architecture and training settings. With ``previous_model`` the
        architecture (and cutoff) of the previous model wins.
    seed
        Seed of the validation split and of MACE. A NaN divergence is retried
        once with ``seed + 1000`` (recorded as ``hyperparameters["retried_seed"]``).
    workdir
        Directory of the run (created); holds ``train.xyz``, ``valid.xyz``,
        MACE's outputs, ``<name>.model`` and the log ``<name>.train.log``.
    e0s_eV
        Isolated-atom energies by chemical symbol (eV). None: the previous
        model's E0s when continuing, else MACE's least-squares ``average``
        (not comparable with isolated-atom values; never mix the two kinds).
    previous_model
        Continue from this model file (``--foundation_model``: its
        architecture, weights and scale/shift are loaded).
    foundation
        Without ``previous_model``: fine-tune from this foundation file
        (:mod:`alflow.committee.foundation`: checked, its pair repulsion
        taken off, multihead replay where it has replay data).
    device
        torch device of the training process.
    threads
        ``OMP_NUM_THREADS`` of the training process.
    name
        Model name; the result is ``workdir/<name>.model``.

    Returns
    -------
    TrainedMember

    Raises
    ------
    TrainingError
        Unlabeled or non-finite frames, a failed MACE run (with the log's
        tail and path), or NaN losses twice.
    """
    start_s = time.perf_counter()
    check_frames(frames)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise TrainingError(f"invalid member name {name!r}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = _MemberSettings(
        model=model, training=training, seed=seed, workdir=workdir, name=name, device=device,
        threads=threads,
    )  # fmt: skip
    plan = _plan(frames, settings, e0s_eV, previous_model, foundation)
    hyperparameters = _hyperparameters(plan)
    cache = workdir / f"{name}.result.pkl"
    inputs = _cache_inputs(plan, plan.argv(seed), hyperparameters["mace_version"])
    cached = load_cached(cache, inputs)  # (TrainedMember, sha256 of its model file)
    # a cached member counts only while its model file is there, unchanged
    if (
        cached is not None
        and cached[1] is not None
        and _file_sha256(cached[0].model_path) == cached[1]
    ):
        return cached[0]
    member = _finished_member(plan, hyperparameters, start_s)
    save_cached(cache, inputs, (member, _file_sha256(member.model_path)))
    logger.info(
        "trained %s (seed %d) in %.1f s: valid RMSE E %s meV/atom, F %s meV/Å",
        name,
        member.seed,
        member.wall_s,
        member.valid_rmse_energy_meV_atom,
        member.valid_rmse_forces_meV_A,
    )
    return member
