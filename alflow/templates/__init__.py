"""Queue-script templates shipped with alflow (package data, read with importlib.resources).

``slurm_template.txt`` and ``pbs_template.txt`` are queue scripts for
FireWorks' ``CommonAdapter`` (``_fw_template_file``), used by ``qlaunch -r``
(``alflow init-cluster`` copies one next to the files it writes) and by the
runner's offline mode.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alflow.errors import ConfigError

__all__ = ["SCHEDULERS", "queue_template"]

SCHEDULERS = ("slurm", "pbs")


def queue_template(scheduler: str) -> Path:
    """Path of the queue-script template for ``scheduler`` ("slurm" or "pbs").

    alflow installs as a plain directory (wheel or editable), so the package
    resource is a real file FireWorks can be given by path.

    Raises
    ------
    ConfigError
        An unknown scheduler.
    """
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler '{scheduler}' (known: {', '.join(SCHEDULERS)})")
    return Path(str(files(__name__).joinpath(f"{scheduler}_template.txt")))
