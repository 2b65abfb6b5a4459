"""The helper processes of the committee package: one environment and one runner.

Importing mace changes process-wide state (torch's default dtype, logging
handlers, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), so whatever loads or
rewrites a MACE model file outside a calculator runs in a child Python
process. What comes before a member's training and cannot wait for it, the
foundation file's inspection (:mod:`alflow.committee.foundation`) and the
previous model's E0s (:mod:`alflow.committee.mace_cli`), goes through
:func:`run_helper`; the member's MACE job (:mod:`alflow.committee.mace_job`:
prior off, ``run_train``, head removal, prior on, in one process) gets the
same environment, :func:`subprocess_env`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from alflow.errors import AlflowError, TrainingError

__all__ = ["one_line", "run_helper", "subprocess_env"]

#: Lines of a failed helper's output quoted in its error.
TAIL_LINES = 3


def subprocess_env(threads: int) -> dict[str, str]:
    """The caller's environment with ``threads`` BLAS/OpenMP threads, no warnings, no display.

    Parameters
    ----------
    threads
        ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``.

    Returns
    -------
    dict
        The environment of a child process.
    """
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    env["MPLBACKEND"] = "Agg"
    return env


def one_line(text: str, n_lines: int = TAIL_LINES) -> str:
    """The last ``n_lines`` non-empty lines of ``text`` joined by ``|`` (warnings left out)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if "Warning" not in ln] or lines
    return " | ".join(lines[-n_lines:]) or "no output"


def run_helper(
    python_args: Sequence[str], *, failure: str, error: type[AlflowError] = TrainingError
) -> str:
    """Run ``python *python_args`` (one thread, no stdin, output captured); return its stdout.

    Parameters
    ----------
    python_args
        Arguments of the interpreter, e.g. ``["-m", "alflow.committee.foundation", ...]``.
    failure
        The start of the error message when the helper fails; its output's
        last lines follow in parentheses.
    error
        The error class raised.

    Returns
    -------
    str
        The helper's standard output.

    Raises
    ------
    error
        The helper exited with a non-zero status.
    """
    process = subprocess.run(
        [sys.executable, *python_args],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(1),
    )
    if process.returncode != 0:
        raise error(f"{failure} ({one_line(process.stderr or process.stdout)})")
    return process.stdout
