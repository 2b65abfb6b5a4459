"""Where things run: the worker's settings, separate from what a campaign computes.

Settings describe the machine, not the science: the data store, the scratch
directory, how to start MPI programs, the torch device. They come from
``ALFLOW_*`` environment variables, or from a YAML file named by
``ALFLOW_SETTINGS_FILE`` (environment wins), and are immutable once read.

Examples
--------
>>> from alflow.settings import Settings
>>> Settings(mpi_ranks=4).mpi_ranks
4
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alflow.errors import ConfigError

__all__ = ["DEFAULT_STORE", "Settings", "load_settings"]

DEFAULT_STORE = "alflow-store"


class Settings(BaseModel):
    """Settings of one worker (machine-specific, never stored with results)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = Field(
        default=DEFAULT_STORE,
        description=(
            "Store: a directory served by the local server (started or reused), "
            "or a mongodb:// URI of a site's MongoDB."
        ),
    )
    local_server: str = Field(
        default="secantusd-py",
        description=(
            "Program of the local server of a store directory: 'secantusd-py' "
            "(PyPI secantusdb), 'mongod', or a path to either."
        ),
    )
    server_port: int = Field(
        default=0, ge=0, le=65535, description="Local server's port on 127.0.0.1 (0: any free)."
    )
    scratch_dir: str = Field(
        default="alflow-scratch", description="Launch and calculation directories."
    )
    mpi_command: str = Field(default="mpiexec", description="MPI launcher for DFT jobs.")
    mpi_ranks: int = Field(default=1, ge=1, description="MPI ranks of one DFT job (1: no MPI).")
    mpi_extra_args: str = Field(default="", description="Extra launcher arguments.")
    gpaw_job_module: str = Field(
        default="alflow.labeling.gpaw_job",
        description="Python module run (python -m) as one GPAW calculation; a site may wrap "
        "alflow.labeling.gpaw_job (profiling, extra logs): it patches calculate, calls main.",
    )
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="torch device for MACE.")
    torch_threads: int = Field(
        default=1, ge=1, description="torch threads per training/MD process."
    )
    parallel_processes: int = Field(
        default=2,
        ge=1,
        description="train/md workers of 'alflow run': members or walkers side by side.",
    )
    dft_workers: int = Field(
        default=0,
        ge=0,
        description="dft workers of 'alflow run' (0: as many as the cores hold mpi_ranks jobs).",
    )
    launchpad_name: str = Field(default="fireworks", description="LaunchPad database name.")
    store_name: str = Field(default="alflow", description="alflow database name.")


_ENV_PREFIX = "ALFLOW_"
# Not pydantic-settings' BaseSettings: that reads the process environment at every
# Settings(...), and workers build theirs from a Firework's _fw_env; here the
# environment is read in one place, load_settings, which names the bad source.


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Read settings from a YAML file, the environment and explicit overrides.

    Parameters
    ----------
    environ
        Environment to read (default ``os.environ``). ``ALFLOW_SETTINGS_FILE``
        names an optional YAML file; ``ALFLOW_<FIELD>`` sets one field.
    overrides
        Values that win over both (e.g. CLI options); ``None`` values are ignored.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        Unknown keys or invalid values, naming their source.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    source = "environment"
    settings_file = env.get("ALFLOW_SETTINGS_FILE")
    if settings_file:
        source = settings_file
        try:
            loaded = yaml.safe_load(Path(settings_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{settings_file}: cannot read settings: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{settings_file}: settings must be a mapping")
        values.update(loaded)
    for name in Settings.model_fields:
        key = _ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"settings ({source}): {problems}") from None
