"""One member's MACE run as one child process: the start file, ``run_train``, the finished model.

A member's run used to start up to three Python processes, each importing
torch and mace (about 5 s apiece on 2 cores, more than a small member's
training): one to take the repulsive prior off the previous model, mace's
``run_train``, and one to put the new prior on. Importing mace changes
process-wide state, so none of it may run in the caller, but all of it can
run in one child: ``python -m alflow.committee.mace_job JOB.json`` runs, in
order,

1. ``strip``: the previous model without its pair repulsion, written where
   ``--foundation_model`` of the argv points
   (:func:`alflow.committee.repulsion.strip_repulsion`);
2. mace-torch's ``run_train`` on the argv (once: a second call in one
   process would stack its log handlers);
3. ``single_head``: the trained multihead model with its ``Default`` head
   only (a foundation start with replay; :mod:`alflow.committee.foundation`);
4. ``radii_A``: the data-following ZBL prior put on
   (:func:`alflow.committee.repulsion.attach_repulsion`).

The output goes to the member's training log. :func:`final_model_path`
tells the parent which file a job leaves as the member's model, by the
suffix rule the steps of :func:`run_job` write with.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from alflow.errors import ConfigError

__all__ = ["MaceJob", "final_model_path", "main", "run_job"]


@dataclass(frozen=True)
class MaceJob:
    """What one MACE run of a member does (written as JSON for the child).

    Attributes
    ----------
    argv
        mace-torch ``run_train`` options (``--name`` among them).
    workdir
        The run's directory (``run_train`` writes ``<name>.model`` there).
    name
        The model name of ``argv``.
    strip
        (previous model, start file): write the start without pair repulsion
        first; None: nothing to strip.
    single_head
        Keep only the ``Default`` head of the trained model.
    radii_A
        Per-element radii of the ZBL prior to put on (Å); None: no prior.
    """

    argv: list[str]
    workdir: str
    name: str
    strip: tuple[str, str] | None = None
    single_head: bool = False
    radii_A: Mapping[str, float] | None = None

    def write(self, path: Path) -> Path:
        """Write the job as JSON to ``path``; return it."""
        Path(path).write_text(json.dumps(asdict(self)))
        return Path(path)

    @classmethod
    def read(cls, path: Path) -> MaceJob:
        """The job written by :meth:`write`."""
        data = json.loads(Path(path).read_text())
        strip = data.pop("strip", None)
        return cls(**data, strip=tuple(strip) if strip else None)


def _after(path: Path, step: str) -> Path:
    """The file a finishing step writes from ``path``: ``m.model`` → ``m.<step>.model``."""
    return path.with_suffix(f".{step}.model")


def final_model_path(job: MaceJob) -> Path:
    """The member's model file once ``job`` has run (``.single``/``.repulsive`` as it asked)."""
    path = Path(job.workdir) / f"{job.name}.model"
    if job.single_head:
        path = _after(path, "single")
    if job.radii_A is not None:
        path = _after(path, "repulsive")
    return path


def run_job(job: MaceJob) -> Path:
    """Run the steps of ``job`` in this process (the child); return the final model file.

    Raises
    ------
    Exception
        Whatever mace's ``run_train`` or a model rewrite raises.
    """
    from alflow.committee.foundation import single_head_model
    from alflow.committee.mace_models import check_device
    from alflow.committee.repulsion import attach_repulsion, strip_repulsion

    if "--device" in job.argv:
        check_device(job.argv[job.argv.index("--device") + 1])
    if job.strip is not None:
        strip_repulsion(Path(job.strip[0]), Path(job.strip[1]))
    from mace import tools
    from mace.cli.run_train import run

    run(tools.build_default_arg_parser().parse_args(job.argv))
    trained = Path(job.workdir) / f"{job.name}.model"
    if not trained.is_file():  # the parent reports the missing file with the log
        return trained
    model = trained
    if job.single_head:
        model = single_head_model(model, _after(model, "single"))
    if job.radii_A is not None:
        model = attach_repulsion(model, _after(model, "repulsive"), job.radii_A)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m alflow.committee.mace_job JOB.json``: run the job; exit 0 when done."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: python -m alflow.committee.mace_job JOB.json")
    try:
        run_job(MaceJob.read(Path(args[0])))
    except ConfigError as exc:  # one line at the end of the log, which the parent quotes
        raise SystemExit(f"alflow: {exc}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
