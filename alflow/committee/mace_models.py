"""MACE without side effects: importing mace, torch dtypes, reading model files.

Importing mace sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` process-wide and
MACE code changes torch's default dtype; :func:`import_mace` and
:func:`load_mace_models` restore both. torch and mace are imported inside the
functions, never at import time.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alflow.errors import ConfigError, TrainingError

__all__ = ["check_device", "import_mace", "load_mace_models", "torch_dtype"]

_ENV_WEIGHTS = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def import_mace() -> Any:
    """Import the mace modules needed for loading and evaluating, without side effects."""
    import torch

    saved_env = os.environ.get(_ENV_WEIGHTS)
    saved_dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings():
            # e3nn loads its constants with torch.load while mace's variable is set
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            warnings.filterwarnings("ignore", message=".*[Cc]uequivariance.*")
            import mace.data
            import mace.modules  # (its classes are needed to unpickle models)
            import mace.tools.torch_geometric
    finally:
        torch.set_default_dtype(saved_dtype)
        if saved_env is None:
            os.environ.pop(_ENV_WEIGHTS, None)
        else:
            os.environ[_ENV_WEIGHTS] = saved_env
    return mace


def check_device(device: str) -> None:
    """Fail in one line when torch cannot use ``device`` here.

    Parameters
    ----------
    device
        ``settings.device`` (``ALFLOW_DEVICE``): ``cpu`` or ``cuda[:N]``.

    Raises
    ------
    ConfigError
        A CUDA device on a torch without one (a CPU build, or no GPU on this
        node), or an index past the devices torch sees.
    """
    if device == "cpu":
        return
    import torch

    if not device.startswith("cuda"):
        raise ConfigError(f"settings.device {device!r} (ALFLOW_DEVICE): use 'cpu' or 'cuda'")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= count:
        build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise ConfigError(
            f"settings.device is {device!r} (ALFLOW_DEVICE), but torch {torch.__version__} "
            f"({build}) sees {count} CUDA device(s) on this node: run it where a GPU is, "
            "or set ALFLOW_DEVICE=cpu"
        )


def torch_dtype(dtype: str) -> Any:
    """The torch dtype named ``"float32"`` or ``"float64"``."""
    import torch

    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return torch.float32 if dtype == "float32" else torch.float64


def load_mace_models(paths: Sequence[Path], device: str) -> list[Any]:
    """Read MACE model files (pickled modules) onto ``device``, in order.

    Raises
    ------
    TrainingError
        No file given, a file is missing or does not hold a MACE module (the
        message names the file).
    """
    check_device(device)
    import torch

    import_mace()
    if not paths:
        raise TrainingError("no model files given")
    models = []
    saved_dtype = torch.get_default_dtype()
    try:
        for path in paths:
            if not path.is_file():
                raise TrainingError(f"model file not found: {path}")
            try:
                model = torch.load(path, map_location=device, weights_only=False)
            except Exception as exc:  # torch/pickle raise many kinds for a bad file
                raise TrainingError(
                    f"cannot load MACE model {path}: {type(exc).__name__}: {exc}"
                ) from exc
            if not (
                isinstance(model, torch.nn.Module)
                and hasattr(model, "r_max")
                and hasattr(model, "atomic_numbers")
            ):
                raise TrainingError(
                    f"cannot load MACE model {path}: it holds a {type(model).__name__}, "
                    "not a MACE module"
                )
            models.append(model)
    finally:
        torch.set_default_dtype(saved_dtype)
    return models
