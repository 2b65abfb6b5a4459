"""Running mace-torch's ``run_train`` for one member and reading its outcome.

:func:`run_mace` runs the member's MACE job (``python -m
alflow.committee.mace_job``: mace's ``run_train`` with the prior taken off
before and put on after) in the member's work directory, its output into the
log; :func:`read_outcome` judges the run:
the model file, the validation errors of the best-validation model and
whether the losses diverged (:class:`DivergedError`). Facts about
mace-torch 0.3.16 relied on: the best-validation model is written to
``<workdir>/<name>.model``; every evaluation (its ``loss`` included) and
every optimisation step go to ``results/<name>_run-<seed>_train.txt``, one
JSON object per line; the errors of the reloaded best model go only to the
"Error-table on TRAIN and VALID" of the log.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from alflow.committee.helper_run import subprocess_env
from alflow.committee.mace_job import MaceJob, final_model_path
from alflow.errors import TrainingError
from alflow.procutil import die_with_parent

__all__ = [
    "DivergedError",
    "clean_outputs",
    "log_tail",
    "mace_version",
    "parse_error_table",
    "read_outcome",
    "read_results",
    "run_mace",
]

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
_MACE_OUTPUT_DIRS = ("checkpoints", "logs", "results")
#: Every model file a MACE job may leave (:func:`alflow.committee.mace_job.final_model_path`).
_MODEL_SUFFIXES = (
    ".model",
    "_compiled.model",
    ".single.model",
    ".repulsive.model",
    ".single.repulsive.model",
)


class DivergedError(Exception):
    """A MACE run produced NaN losses (internal: triggers the one retry)."""


def run_mace(job: MaceJob, log_path: Path, threads: int) -> int:
    """Run ``job`` (``python -m alflow.committee.mace_job``) in its workdir; return the exit code.

    The job is written beside the log as ``<name>.job.json``.
    """
    workdir = Path(job.workdir)
    job_file = job.write(workdir / f"{job.name}.job.json")
    cmd = [sys.executable, "-m", "alflow.committee.mace_job", str(job_file)]
    logger.info("training in %s: mace run_train %s", workdir, " ".join(job.argv))
    with open(log_path, "w") as log:
        process = subprocess.run(
            cmd,
            cwd=workdir,
            env=subprocess_env(threads),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            preexec_fn=die_with_parent(),  # no orphan training if the worker is killed
        )
    return process.returncode


def log_tail(log_path: Path, n_lines: int = LOG_TAIL_LINES) -> str:
    """The last ``n_lines`` of a log, ``<no log>`` if it cannot be read."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "<no log>"
    return "\n".join(lines[-n_lines:])


def read_results(workdir: Path, name: str, seed: int) -> list[dict[str, Any]]:
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
    # the log, not results/*_train.txt: mace 0.3.16 never writes the reloaded best model's errors there
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


def clean_outputs(workdir: Path, name: str) -> None:
    """Remove what a previous MACE run in ``workdir`` left (so a rerun starts fresh)."""
    for sub in _MACE_OUTPUT_DIRS:
        shutil.rmtree(workdir / sub, ignore_errors=True)
    for suffix in _MODEL_SUFFIXES:
        (workdir / f"{name}{suffix}").unlink(missing_ok=True)


def read_outcome(job: MaceJob, returncode: int, log_path: Path) -> tuple[Path, dict[str, float]]:
    """The model and validation errors of a finished MACE job.

    Parameters
    ----------
    job
        The job that ran (its workdir, name, ``--seed`` and what it made).
    returncode
        Exit code of the job.
    log_path
        Its log.

    Returns
    -------
    model_path, errors
        :func:`~alflow.committee.mace_job.final_model_path` and the
        ``valid_Default`` row of :func:`parse_error_table`.

    Raises
    ------
    DivergedError
        A NaN loss in the results file or a NaN error (the model files are removed).
    TrainingError
        A non-zero exit code or no model file (with the log's tail and path).
    """
    workdir, name = Path(job.workdir), job.name
    seed = int(job.argv[job.argv.index("--seed") + 1])
    records = read_results(workdir, name, seed)
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    errors = parse_error_table(log_text)
    if _is_nan_loss(records) or any(not math.isfinite(v) for v in errors.values()):
        for suffix in _MODEL_SUFFIXES:  # never leave a NaN model behind
            (workdir / f"{name}{suffix}").unlink(missing_ok=True)
        raise DivergedError(f"NaN loss or metrics (seed {seed}); log: {log_path}")
    model_path = final_model_path(job)
    if returncode != 0 or not model_path.exists():
        reason = f"exit code {returncode}" if returncode != 0 else f"{model_path.name} not written"
        raise TrainingError(
            f"MACE training of '{name}' failed ({reason}); log: {log_path}\n"
            f"--- last lines ---\n{log_tail(log_path)}"
        )
    return model_path, errors


def mace_version() -> str | None:
    """The installed mace-torch version, None if it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mace-torch")
    except PackageNotFoundError:
        return None
