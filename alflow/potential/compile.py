"""Read the exported models' facts and make their LAMMPS form, in one child process.

mace changes process-wide torch state when imported, so a single child
process reads every model (cutoff, elements, parameters) and runs mace-torch's
own ``create_lammps_model`` on each: one mace import for the whole export.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alflow.committee.helper_run import subprocess_env
from alflow.errors import TrainingError
from alflow.potential.card import LAMMPS_DTYPE
from alflow.procutil import die_with_parent

__all__ = ["inspect_and_compile"]

log = logging.getLogger(__name__)

_TAIL_LINES = 15
#: What mace's ``create_lammps_model`` appends to a model file's name.
LAMMPS_SUFFIX = "-lammps.pt"
#: Longest the child process that inspects and compiles the models may take (s).
CHILD_TIMEOUT_S = 900.0


def _child_env() -> dict[str, str]:
    return subprocess_env(1)


def _run_child(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a child process (one thread, no stdin); its output is captured."""
    try:
        return subprocess.run(
            list(cmd),
            cwd=cwd,
            env=_child_env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=CHILD_TIMEOUT_S,
            check=False,
            preexec_fn=die_with_parent(),
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(list(cmd), -9, "", f"timed out after {exc.timeout} s")


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if "Warning" not in line]
    return " | ".join(lines[-_TAIL_LINES:]) or "no output"


_MODELS_SCRIPT = """
import contextlib, io, json, sys
import torch

def inspect(path):
    model = torch.load(path, map_location="cpu", weights_only=False)
    zs = [int(z) for z in model.atomic_numbers.tolist()]
    e0s = model.atomic_energies_fn.atomic_energies.detach().reshape(-1, len(zs))[0].tolist()
    return {
        "model_class": type(model).__name__,
        "r_max_A": float(model.r_max),
        "atomic_numbers": zs,
        "heads": list(getattr(model, "heads", None) or ["Default"]),
        "e0s_eV": {str(z): float(e) for z, e in zip(zs, e0s)},
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "pair_repulsion": bool(getattr(model, "pair_repulsion", False)),
    }

def compile_lammps(path, dtype):
    from mace.cli import create_lammps_model  # mace's own tool, run as its command line
    sys.argv = ["create_lammps_model", path, "--dtype", dtype]
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):
            create_lammps_model.main()
    except BaseException as exc:  # argparse's SystemExit, input() on a multi-head model, ...
        lines = said.getvalue().strip().splitlines()[-3:]
        return None, " | ".join([*lines, f"{type(exc).__name__}: {exc}"])
    return path + "-lammps.pt", None

dtype, paths = sys.argv[1], sys.argv[2:]
infos = [inspect(path) for path in paths]
for path, info in zip(paths, infos):
    info["lammps_file"], info["lammps_error"] = (
        compile_lammps(path, dtype) if dtype != "none" else (None, "not requested (--no-lammps)")
    )
print(json.dumps(infos))
"""


def inspect_and_compile(paths: Sequence[Path], lammps: bool = True) -> list[dict[str, Any]]:
    """What each MACE model file holds, and its LAMMPS form, made in one child process.

    The child reads each model's cutoff, elements, heads, E0s (eV), dtype,
    size and whether it carries a pair repulsion, then (``lammps``) runs
    mace's ``create_lammps_model`` on it (as ``python -m
    mace.cli.create_lammps_model FILE --dtype float64`` does), which writes
    ``FILE-lammps.pt`` next to it. One process for all members: mace's import
    is paid once.

    Returns
    -------
    list of dict
        Per model: ``model_class``, ``r_max_A``, ``atomic_numbers``, ``heads``,
        ``e0s_eV`` (``{"Z": eV}``), ``dtype``, ``n_parameters``,
        ``pair_repulsion``, ``lammps_file`` (the name of the LAMMPS form, in
        the model's directory, or None) and ``lammps_error`` (why there is
        none, or None). A child that crashed while compiling is run again
        without compiling, and the crash is every member's ``lammps_error``.

    Raises
    ------
    TrainingError
        A file is not a loadable MACE model (with the child's last lines).
    """
    dtype = LAMMPS_DTYPE if lammps else "none"
    cmd = [sys.executable, "-c", _MODELS_SCRIPT, dtype, *(str(p.resolve()) for p in paths)]
    process = _run_child(cmd, Path(paths[0]).parent)
    if process.returncode != 0 and lammps:
        crash = f"the process compiling the models failed: {_tail(process.stderr)}"
        log.warning("%s; exporting without LAMMPS forms", crash)
        infos = inspect_and_compile(paths, lammps=False)
        return [{**info, "lammps_error": crash} for info in infos]
    if process.returncode != 0:
        raise TrainingError(f"cannot read the exported models: {_tail(process.stderr)}")
    infos = json.loads(process.stdout.strip().splitlines()[-1])
    for path, info in zip(paths, infos, strict=True):
        made = info["lammps_file"] is not None and Path(info["lammps_file"]).is_file()
        if info["lammps_file"] is not None and not made:
            info["lammps_error"] = f"create_lammps_model did not write {info['lammps_file']}"
        info["lammps_file"] = Path(path).name + LAMMPS_SUFFIX if made else None
    return infos
