"""Train one MACE committee member in its own process.

:func:`train_member` writes the labeled frames as extended XYZ (``REF_energy``,
``REF_forces``, ``REF_stress``), splits off a seeded validation set, builds
mace-torch's ``run_train`` command line from the campaign's
:class:`~alflow.config.MaceModelConfig` and :class:`~alflow.config.TrainingConfig`,
and runs ``python -m mace.cli.run_train`` in a subprocess. MACE changes
process-wide state (torch's default dtype, logging handlers,
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), so it never runs in the caller's
process; this module imports neither mace nor torch.

Facts about mace-torch 0.3.16 this module relies on (checked on this machine):

- the best-validation model is written to ``<workdir>/<name>.model``, the
  validation errors of that model to the "Error-table on TRAIN and VALID" of
  the log, and every evaluation to ``results/<name>_run-<seed>_train.txt``
  (one JSON object per line);
- ``--foundation_model PATH`` with a local file loads its architecture and
  weights (no download; multi-head fine-tuning is switched off for a file);
  the first validation loss of the continued run equals the previous model's
  best one;
- ``--E0s foundation`` fails for one-element models (0-d tensor indexing), so
  the previous model's E0s are read in a helper process and passed as a dict;
- ``batch_size`` larger than the training set fails: it is clamped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from alflow.committee.foundation import finish_foundation, foundation_argv, prepare_foundation
from alflow.committee.repulsion import with_repulsion, without_repulsion
from alflow.config import MaceModelConfig, TrainingConfig
from alflow.errors import TrainingError
from alflow.procutil import die_with_parent
from alflow.workcache import fingerprint, load_cached, save_cached, sha256_file

__all__ = ["TrainedMember", "build_train_argv", "split_frames", "train_member"]

logger = logging.getLogger(__name__)

ENERGY_KEY = "REF_energy"
FORCES_KEY = "REF_forces"
STRESS_KEY = "REF_stress"
RETRY_SEED_OFFSET = 1000
_LOG_TAIL_LINES = 40
_MACE_OUTPUT_DIRS = ("checkpoints", "logs", "results")


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


class _DivergedError(Exception):
    """A MACE run produced NaN losses (internal: triggers the one retry)."""


# --------------------------------------------------------------------------- data


def _check_frames(frames: Sequence[Atoms]) -> None:
    """Raise TrainingError unless every frame carries finite energy and forces."""
    if len(frames) < 2:
        raise TrainingError(
            f"need at least 2 labeled frames (one for training, one for validation), got {len(frames)}"
        )
    for i, atoms in enumerate(frames):
        if not isinstance(atoms, Atoms) or len(atoms) == 0:
            raise TrainingError(f"frame {i}: not a non-empty ase.Atoms")
        calc = atoms.calc
        results = getattr(calc, "results", None) or {}
        if "energy" not in results or "forces" not in results:
            raise TrainingError(
                f"frame {i}: no reference labels (atoms.calc must be a SinglePointCalculator "
                "with energy and forces)"
            )
        energy = np.asarray(results["energy"], dtype=float)
        forces = np.asarray(results["forces"], dtype=float)
        if forces.shape != (len(atoms), 3):
            raise TrainingError(
                f"frame {i}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)"
            )
        if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(forces))):
            raise TrainingError(f"frame {i}: non-finite energy or forces")
        if not (
            np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(np.asarray(atoms.cell)))
        ):
            raise TrainingError(f"frame {i}: non-finite positions or cell")


#: Per-frame loss settings MACE reads from ``atoms.info`` (kept when writing training files).
MACE_FRAME_KEYS = ("config_type", "config_weight")


def _to_training_atoms(atoms: Atoms) -> Atoms:
    """Copy of a labeled frame with its labels as REF_* info/arrays (no calculator).

    ``config_type`` and ``config_weight`` in ``atoms.info`` are kept: MACE
    scales the frame's loss by the weight.
    """
    results = atoms.calc.results
    plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    plain.info.update({k: atoms.info[k] for k in MACE_FRAME_KEYS if k in atoms.info})
    plain.info[ENERGY_KEY] = float(results["energy"])
    plain.arrays[FORCES_KEY] = np.asarray(results["forces"], dtype=float).copy()
    stress = results.get("stress")
    if stress is not None and atoms.pbc.all():
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if np.all(np.isfinite(stress)):
            plain.info[STRESS_KEY] = stress.copy()
    return plain


def split_frames(
    n_frames: int, valid_fraction: float, seed: int, bootstrap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of frame indices.

    Parameters
    ----------
    n_frames
        Number of labeled frames (at least 2).
    valid_fraction
        Fraction of frames for validation; at least one frame, at most
        ``n_frames - 1``.
    seed
        Random seed: the same seed gives the same split.
    bootstrap
        Resample the training indices with replacement (same count).

    Returns
    -------
    train_idx, valid_idx : numpy.ndarray
        Integer index arrays.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_frames)
    n_valid = min(max(1, round(valid_fraction * n_frames)), n_frames - 1)
    valid_idx = np.sort(order[:n_valid])
    train_idx = np.sort(order[n_valid:])
    if bootstrap:
        train_idx = np.sort(rng.choice(train_idx, size=len(train_idx), replace=True))
    return train_idx, valid_idx


# --------------------------------------------------------------------------- argv


def _e0s_argument(e0s_eV: Mapping[str, float] | Mapping[int, float]) -> str:
    """MACE's ``--E0s`` dict string ``{Z: eV}`` from symbols or atomic numbers."""
    by_z: dict[int, float] = {}
    for key, value in e0s_eV.items():
        z = int(key) if isinstance(key, int) or str(key).isdigit() else atomic_numbers[str(key)]
        by_z[z] = float(value)
    return "{" + ", ".join(f"{z}: {by_z[z]!r}" for z in sorted(by_z)) + "}"


def build_train_argv(
    *,
    model: MaceModelConfig,
    training: TrainingConfig,
    seed: int,
    name: str,
    n_train: int,
    n_valid: int,
    e0s: str,
    train_file: str = "train.xyz",
    valid_file: str = "valid.xyz",
    previous_model: Path | None = None,
    device: str = "cpu",
    extra_argv: Sequence[str] = (),
) -> list[str]:
    """mace-torch ``run_train`` arguments for one member.

    Parameters
    ----------
    model, training
        Architecture and training settings.
    seed
        MACE's ``--seed``.
    name
        Model name: MACE writes ``<name>.model``.
    n_train, n_valid
        Set sizes; the batch sizes are clamped to them (MACE 0.3.16 fails
        with a batch larger than the set).
    e0s
        ``--E0s`` value: ``"average"`` or a ``{Z: eV}`` dict string.
    train_file, valid_file
        Extended XYZ files, relative to the working directory.
    previous_model
        A model file to continue from (``--foundation_model``).
    device
        torch device.
    extra_argv
        Appended as they are (a foundation start's fine-tuning options,
        :func:`alflow.committee.foundation.foundation_argv`).

    Returns
    -------
    list of str
    """
    batch_size = max(1, min(training.batch_size, n_train))
    valid_batch_size = max(1, min(training.batch_size, n_valid))
    argv = [
        "--name", name,
        "--seed", str(seed),
        "--train_file", train_file,
        "--valid_file", valid_file,
        "--energy_key", ENERGY_KEY,
        "--forces_key", FORCES_KEY,
        "--stress_key", STRESS_KEY,
        "--model", "ScaleShiftMACE",
        "--num_channels", str(model.channels),
        "--max_L", str(model.max_L),
        "--r_max", repr(float(model.r_max_A)),
        "--num_interactions", str(model.num_interactions),
        "--correlation", str(model.correlation),
        "--max_num_epochs", str(training.epochs),
        "--batch_size", str(batch_size),
        "--valid_batch_size", str(valid_batch_size),
        "--lr", repr(float(training.lr)),
        "--energy_weight", repr(float(training.energy_weight)),
        "--forces_weight", repr(float(training.forces_weight)),
        "--E0s", e0s,
        "--default_dtype", training.dtype,
        "--device", device,
        "--error_table", "PerAtomRMSE",
        "--eval_interval", "1",
        "--plot", "False",
    ]  # fmt: skip
    if training.stress_weight > 0:
        argv += ["--loss", "stress", "--stress_weight", repr(float(training.stress_weight))]
    else:
        argv += ["--loss", "weighted"]
    if training.ema:
        argv.append("--ema")
    if previous_model is not None:
        argv += ["--foundation_model", str(Path(previous_model).resolve())]
    return [*argv, *extra_argv]


# --------------------------------------------------------------------------- running


def _subprocess_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    env["MPLBACKEND"] = "Agg"
    return env


def _run_mace(argv: list[str], workdir: Path, log_path: Path, threads: int) -> int:
    """Run ``python -m mace.cli.run_train argv`` in ``workdir``; return its exit code."""
    cmd = [sys.executable, "-m", "mace.cli.run_train", *argv]
    logger.info("training in %s: %s", workdir, " ".join(cmd))
    with open(log_path, "w") as log:
        process = subprocess.run(
            cmd,
            cwd=workdir,
            env=_subprocess_env(threads),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            preexec_fn=die_with_parent(),  # no orphan training if the worker is killed
        )
    return process.returncode


_READ_E0S_SCRIPT = """
import json, sys, torch
model = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
energies = model.atomic_energies_fn.atomic_energies.detach().reshape(-1, len(model.atomic_numbers))
print(json.dumps({int(z): float(e) for z, e in zip(model.atomic_numbers.tolist(), energies[0].tolist())}))
"""


def read_model_e0s(model_path: Path) -> dict[int, float]:
    """Isolated-atom energies (eV, keyed by atomic number) stored in a MACE model.

    Runs in a helper process, so that mace's import-time side effects stay
    out of the caller.

    Parameters
    ----------
    model_path
        A ``.model`` file written by MACE.

    Returns
    -------
    dict
        ``{Z: E0 in eV}`` of the model's first head.

    Raises
    ------
    TrainingError
        The file cannot be loaded as a MACE model.
    """
    process = subprocess.run(
        [sys.executable, "-c", _READ_E0S_SCRIPT, str(model_path)],
        capture_output=True,
        text=True,
        env=_subprocess_env(1),
        check=False,
    )
    if process.returncode != 0:
        tail = "\n".join(process.stderr.strip().splitlines()[-_LOG_TAIL_LINES:])
        raise TrainingError(f"cannot read E0s from previous model {model_path}:\n{tail}")
    return {int(z): e for z, e in json.loads(process.stdout.strip().splitlines()[-1]).items()}


def _log_tail(log_path: Path, n_lines: int = _LOG_TAIL_LINES) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "<no log>"
    return "\n".join(lines[-n_lines:])


def _read_results(workdir: Path, name: str, seed: int) -> list[dict[str, Any]]:
    """MACE's per-evaluation records (results/<name>_run-<seed>_train.txt)."""
    path = workdir / "results" / f"{name}_run-{seed}_train.txt"
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


_NUMBER = r"[-+]?(?:nan|inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def parse_error_table(log_text: str, row: str = "valid_Default") -> dict[str, float]:
    """Errors of one row of MACE's final "Error-table on TRAIN and VALID".

    Parameters
    ----------
    log_text
        The training log.
    row
        Row label (``valid_Default`` for the validation set).

    Returns
    -------
    dict
        Column header → value, e.g. ``{"RMSE E / meV / atom": 12.3,
        "RMSE F / meV / A": 45.6, ...}``; empty if the table is missing.
    """
    start = log_text.rfind("Error-table on TRAIN and VALID")
    if start < 0:
        return {}
    header: list[str] | None = None
    for line in log_text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if header is not None and not line.startswith("+"):
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif cells and cells[0] == row:
            values = {}
            for key, cell in zip(header[1:], cells[1:], strict=False):
                if re.fullmatch(_NUMBER, cell, flags=re.IGNORECASE):
                    values[key] = float(cell)
            return values
    return {}


def _is_nan_loss(records: list[dict[str, Any]]) -> bool:
    return any(isinstance(r.get("loss"), float) and not math.isfinite(r["loss"]) for r in records)


def _clean_outputs(workdir: Path, name: str) -> None:
    """Remove what a previous MACE run in ``workdir`` left (so a rerun starts fresh)."""
    for sub in _MACE_OUTPUT_DIRS:
        shutil.rmtree(workdir / sub, ignore_errors=True)
    for suffix in (".model", "_compiled.model"):
        (workdir / f"{name}{suffix}").unlink(missing_ok=True)


def _attempt(
    argv: list[str], workdir: Path, name: str, seed: int, threads: int
) -> tuple[Path, dict[str, float], Path]:
    """One MACE run; returns (model path, validation errors, log path).

    Raises _DivergedError on NaN losses and TrainingError on other failures.
    """
    _clean_outputs(workdir, name)
    log_path = workdir / f"{name}.train.log"
    returncode = _run_mace(argv, workdir, log_path, threads)
    records = _read_results(workdir, name, seed)
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    errors = parse_error_table(log_text)
    nan_metrics = any(not math.isfinite(v) for v in errors.values())
    if _is_nan_loss(records) or nan_metrics or re.search(r"loss=\s*nan", log_text, re.IGNORECASE):
        for suffix in (".model", "_compiled.model"):  # never leave a NaN model behind
            (workdir / f"{name}{suffix}").unlink(missing_ok=True)
        raise _DivergedError(f"NaN loss or metrics (seed {seed}); log: {log_path}")
    model_path = workdir / f"{name}.model"
    if returncode != 0 or not model_path.exists():
        reason = f"exit code {returncode}" if returncode != 0 else f"{model_path.name} not written"
        raise TrainingError(
            f"MACE training of '{name}' failed ({reason}); log: {log_path}\n"
            f"--- last lines ---\n{_log_tail(log_path)}"
        )
    return model_path, errors, log_path


def _file_sha256(path: Path) -> str | None:
    """sha256 of a file, None if it does not exist."""
    try:
        return sha256_file(Path(path))
    except OSError:
        return None


def _mace_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mace-torch")
    except PackageNotFoundError:
        return None


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
    start = time.perf_counter()
    _check_frames(frames)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise TrainingError(f"invalid member name {name!r}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    train_idx, valid_idx = split_frames(
        len(frames), training.valid_fraction, seed, training.bootstrap
    )
    from ase.io import write

    write(
        workdir / "train.xyz", [_to_training_atoms(frames[i]) for i in train_idx], format="extxyz"
    )
    write(
        workdir / "valid.xyz", [_to_training_atoms(frames[i]) for i in valid_idx], format="extxyz"
    )

    if previous_model is not None:
        previous_model = Path(previous_model).resolve()
        if not previous_model.is_file():
            raise TrainingError(f"previous model not found: {previous_model}")
        if training.pair_repulsion:  # the prior follows this run's data: start without it
            previous_model = without_repulsion(previous_model)
        if previous_model.parent == workdir or workdir in previous_model.parents:
            # this run cleans its workdir first: keep the previous model out of the way
            kept = workdir / f"{name}.previous.model"
            if previous_model != kept:
                shutil.copyfile(previous_model, kept)
            previous_model = kept

    symbols = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
    fstart = None
    if foundation is not None and previous_model is None:
        fstart = prepare_foundation(
            Path(foundation), workdir=workdir, name=name, elements=symbols, model=model,
            training=training, seed=seed, n_train=len(train_idx),
        )  # fmt: skip
    start_model = previous_model if fstart is None else fstart.model_path
    e0s_source: str
    e0s_values: dict[str, float] | None
    if e0s_eV is not None:
        missing = [s for s in symbols if s not in e0s_eV]
        if missing:
            raise TrainingError(f"e0s_eV lacks elements {missing}")
        e0s_values = {s: float(e0s_eV[s]) for s in symbols}
        e0s, e0s_source = _e0s_argument(e0s_values), "given"
    elif fstart is not None:
        e0s_values = {s: fstart.info.e0s_eV[s] for s in symbols}
        e0s, e0s_source = _e0s_argument(e0s_values), "foundation"
    elif previous_model is not None:
        by_z = read_model_e0s(Path(previous_model))
        missing = [s for s in symbols if atomic_numbers[s] not in by_z]
        if missing:
            raise TrainingError(
                f"previous model {previous_model} has no E0s for {missing}: pass e0s_eV"
            )
        e0s_values = {s: by_z[atomic_numbers[s]] for s in symbols}
        e0s, e0s_source = _e0s_argument(e0s_values), "previous_model"
    else:
        e0s, e0s_source, e0s_values = "average", "average", None

    hyperparameters: dict[str, Any] = {
        "model": model.model_dump(mode="json"),
        "training": training.model_dump(mode="json"),
        "seed": seed,
        "n_train": len(train_idx),
        "n_valid": len(valid_idx),
        "valid_indices": [int(i) for i in valid_idx],
        "e0s": e0s_source,
        "e0s_eV": e0s_values,
        "previous_model": str(previous_model) if previous_model is not None else None,
        "foundation": fstart.record() if fstart is not None else None,
        "device": device,
        "threads": threads,
        "mace_version": _mace_version(),
        "retried_seed": None,
    }

    def argv_for(run_seed: int) -> list[str]:
        return build_train_argv(
            model=model,
            training=training,
            seed=run_seed,
            name=name,
            n_train=len(train_idx),
            n_valid=len(valid_idx),
            e0s=e0s,
            previous_model=start_model,
            device=device,
            extra_argv=foundation_argv(fstart) if fstart is not None else (),
        )

    run_seed = seed
    argv = argv_for(run_seed)
    cache = workdir / f"{name}.result.pkl"
    inputs = fingerprint(
        (workdir / "train.xyz").read_bytes(),
        (workdir / "valid.xyz").read_bytes(),
        argv,
        _file_sha256(previous_model) if previous_model is not None else None,
        (fstart.info.sha256, fstart.replay_path and _file_sha256(fstart.replay_path))
        if fstart is not None
        else None,
        hyperparameters["mace_version"],
    )
    cached = load_cached(cache, inputs)  # (TrainedMember, sha256 of its model file)
    if cached is not None and _file_sha256(cached[0].model_path) == cached[1]:
        return cached[0]
    try:
        model_path, errors, log_path = _attempt(argv, workdir, name, run_seed, threads)
    except _DivergedError as exc:
        failed_log = workdir / f"{name}.train.seed{seed}.log"
        (workdir / f"{name}.train.log").replace(failed_log)
        run_seed = seed + RETRY_SEED_OFFSET
        logger.warning(
            "%s; retrying once with seed %d (failed log kept: %s)", exc, run_seed, failed_log
        )
        hyperparameters["retried_seed"] = run_seed
        argv = argv_for(run_seed)
        try:
            model_path, errors, log_path = _attempt(argv, workdir, name, run_seed, threads)
        except _DivergedError as exc2:
            log_path = workdir / f"{name}.train.log"
            raise TrainingError(
                f"MACE training of '{name}' diverged twice (seeds {seed}, {run_seed}); "
                f"log: {log_path}\n--- last lines ---\n{_log_tail(log_path)}"
            ) from exc2

    if fstart is not None:
        model_path = finish_foundation(model_path, fstart)
    if training.pair_repulsion:
        model_path, hyperparameters["repulsion"] = with_repulsion(model_path, frames, model.r_max_A)
    hyperparameters["argv"] = argv
    hyperparameters["log_path"] = str(log_path)
    hyperparameters["valid_errors"] = errors
    wall_s = time.perf_counter() - start
    member = TrainedMember(
        model_path=model_path,
        seed=run_seed,
        n_train=len(train_idx),
        n_valid=len(valid_idx),
        valid_rmse_energy_meV_atom=errors.get("RMSE E / meV / atom"),
        valid_rmse_forces_meV_A=errors.get("RMSE F / meV / A"),
        wall_s=wall_s,
        hyperparameters=hyperparameters,
    )
    save_cached(cache, inputs, (member, _file_sha256(model_path)))
    logger.info(
        "trained %s (seed %d) in %.1f s: valid RMSE E %s meV/atom, F %s meV/Å",
        name,
        run_seed,
        wall_s,
        member.valid_rmse_energy_meV_atom,
        member.valid_rmse_forces_meV_A,
    )
    return member
