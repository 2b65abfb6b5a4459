"""mace-torch's ``run_train`` command line of one member, built from the campaign's configs.

:func:`build_train_argv` turns :class:`~alflow.config.MaceModelConfig` and
:class:`~alflow.config.TrainingConfig` into ``run_train`` options;
:func:`member_e0s` chooses the ``--E0s`` value (given, the foundation's, the
previous model's, or MACE's ``average``). mace-torch 0.3.16 facts relied on:
``--E0s foundation`` fails for one-element models (0-d tensor indexing), so a
previous model's E0s are read in a helper process (:func:`read_model_e0s`)
and passed as a dict; a batch larger than its set fails, so batch sizes are
clamped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ase.data import atomic_numbers

from alflow.committee.foundation import FoundationStart
from alflow.committee.helper_run import run_helper
from alflow.committee.training_set import ENERGY_KEY, FORCES_KEY, STRESS_KEY, TRAIN_FILE, VALID_FILE
from alflow.config import MaceModelConfig, TrainingConfig
from alflow.errors import TrainingError

__all__ = ["MemberE0s", "build_train_argv", "e0s_argument", "member_e0s", "read_model_e0s"]


@dataclass(frozen=True)
class MemberE0s:
    """The ``--E0s`` of one member.

    ``argument`` is the ``run_train`` value, ``source`` where it came from
    (``given``, ``foundation``, ``previous_model`` or ``average``) and
    ``values_eV`` the energies by chemical symbol (None for ``average``).
    """

    argument: str
    source: str
    values_eV: dict[str, float] | None


def e0s_argument(e0s_eV: Mapping[str, float] | Mapping[int, float]) -> str:
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
    train_file: str = TRAIN_FILE,
    valid_file: str = VALID_FILE,
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
    stdout = run_helper(
        ["-c", _READ_E0S_SCRIPT, str(model_path)],
        failure=f"cannot read E0s from previous model {model_path}",
    )
    return {int(z): e for z, e in json.loads(stdout.strip().splitlines()[-1]).items()}


def member_e0s(
    symbols: Sequence[str],
    e0s_eV: Mapping[str, float] | None,
    foundation: FoundationStart | None,
    previous_model: Path | None,
) -> MemberE0s:
    """The ``--E0s`` of a member: given, else the foundation's, the previous model's or ``average``.

    Parameters
    ----------
    symbols
        The training frames' elements.
    e0s_eV
        Isolated-atom energies by chemical symbol (eV), or None.
    foundation
        The member's foundation start, or None.
    previous_model
        The model the member continues from, or None.

    Raises
    ------
    TrainingError
        ``e0s_eV`` or the previous model lacks an element.
    """
    if e0s_eV is not None:
        missing = [s for s in symbols if s not in e0s_eV]
        if missing:
            raise TrainingError(f"e0s_eV lacks elements {missing}")
        values, source = {s: float(e0s_eV[s]) for s in symbols}, "given"
    elif foundation is not None:
        values, source = {s: foundation.info.e0s_eV[s] for s in symbols}, "foundation"
    elif previous_model is not None:
        by_z = read_model_e0s(Path(previous_model))
        missing = [s for s in symbols if atomic_numbers[s] not in by_z]
        if missing:
            raise TrainingError(
                f"previous model {previous_model} has no E0s for {missing}: pass e0s_eV"
            )
        values, source = {s: by_z[atomic_numbers[s]] for s in symbols}, "previous_model"
    else:
        return MemberE0s(argument="average", source="average", values_eV=None)
    return MemberE0s(argument=e0s_argument(values), source=source, values_eV=values)
