"""The saving, end to end: whole alflow campaigns, committee selection against random.

EMT is the oracle. For each seed, two campaigns run the same loop with
``alflow run`` (FireWorks workers on a local store directory in a temporary
directory, exactly what a user runs): the same seed set, exploration,
training and label budget per iteration; they differ only in
``selection.strategy``:

- ``alflow``: the committee strategy (calibrated trust window, audit frames,
  FPS on MACE descriptors; the defaults of :class:`alflow.config.SelectionConfig`);
- ``random``: the same number of explored frames per iteration, drawn
  uniformly at random among those that pass the same physical sanity checks
  (:mod:`alflow.steps.select_random`).

Both campaigns stop by ``loop.max_iterations`` only: the convergence rule is
switched off (``converged_accurate_fraction: 1.0`` and a target force RMSE of
1e-9 eV/Å that no committee reaches) and ``max_dft_labels`` is larger than
what the iterations can spend, so both spend the same label budget,
``max_per_iteration`` per iteration (alflow may spend fewer where its window
holds fewer candidates; the labels actually spent are what the curves use).

The cell is 8-atom fcc Cu, started at three lattice constants (3.54, 3.61,
3.68 Å: -2, 0, +2 % strain); the seed set is those three cells, one
rattled and strained copy of each, 4 Cu dimers and 3 squeezed cells (13 EMT
labels, the same for both methods of a seed); the walkers run NVT Langevin
MD at 300 and 900 K and stop where the committee's deviation reaches
``trust_hi`` (0.6 eV/Å). The test set is generated here, independent of
every campaign: EMT Langevin MD frames at 300, 600, 900 and 1500 K in cells
strained by -4, -2, 0, +2 and +4 % (from a = 3.61 Å). ``inside`` is what
the campaign explores (T <= 900 K, |strain| <= 2 %), ``beyond`` the rest
(1500 K, or 4 % strain).

After each campaign the committee of every iteration, and the final fit,
are read back from the store (:meth:`alflow.store.Store.trained_models`,
:meth:`alflow.steps.context.StepContext.load_committee`) and evaluated on
the test set: force RMSE of the committee mean (eV/Å) against the number of
labels it was trained on (seed set included: the model record's
``n_frames``). The final fit uses the iterations' epochs and continues from
the last iteration's members, so it is one more point of the same curve.

``target_force_rmse_eV_A`` is, as in ``benchmarks/data_efficiency.py``, the
seed-averaged test RMSE random selection reaches with all its labels (its
final fit) unless ``--target`` is given; ``labels_to_target`` is the label
count (seed set included) of the first point of the seed-averaged curve at
or below it (None: never), ``labels_to_target_interpolated`` where the
curve crosses it, log(RMSE) interpolated linearly in labels, and
``selected_labels_to_target`` the same minus the seed set: the labels each
selection chose (:mod:`campaign_efficiency_summary`).

Sizes (:data:`FULL`, :data:`QUICK`): full, 3 seeds x 2 methods, 5
iterations of 4 labels, committees of 4 MACE models (16 channels) trained 30
epochs per iteration, 4 walkers of 300 steps; ``--quick``, a smoke run of
the whole path: 1 seed, 1 iteration of 4 labels and the final fit, 2
members, 5 epochs, 2 walkers of 60 steps, the two campaigns side by side
with one train/md worker each (``--side-by-side``; 85 s on an idle 2-core
machine, 67 s per campaign; 9.4 min one after the other on a machine at
load 4, before a member's MACE run became one process). The curve of
``--quick`` (2 points per method) is no measurement of the saving.

Usage::

    python benchmarks/campaign_efficiency.py --quick     # 1 seed, tiny campaigns
    python benchmarks/campaign_efficiency.py --plot docs/figures/campaign_efficiency.png
    python benchmarks/campaign_efficiency.py --partial /tmp/ce.json   # rewritten per campaign
    python benchmarks/campaign_efficiency.py --runs /tmp/ce.json --plot out.png  # summarise

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from campaign_efficiency_summary import (  # noqa: E402  (the benchmarks folder is no package)
    METHODS,
    labels_to_target,
    labels_to_target_interpolated,
    plot_curves,
    summarize,
)

__all__ = ["labels_to_target", "labels_to_target_interpolated", "main", "summarize"]

STRATEGY = {"random": "random", "alflow": "committee"}
#: Walker temperatures of every campaign (K) and the lattice constants it starts from (Å).
CAMPAIGN_TEMPERATURES_K = (300.0, 900.0)
LATTICE_A = (3.54, 3.61, 3.68)
REFERENCE_A = 3.61
TEST_TEMPERATURES_K = (300.0, 600.0, 900.0, 1500.0)
TEST_STRAINS = (-0.04, -0.02, 0.0, 0.02, 0.04)


@dataclass(frozen=True)
class Setup:
    """Sizes of one benchmark run."""

    seeds: int
    iterations: int
    per_iteration: int
    members: int
    epochs: int
    walkers: int
    steps: int
    test_frames_per_condition: int


QUICK = Setup(  # a smoke run of the whole path: iteration 0 and the final fit per method
    seeds=1,
    iterations=1,
    per_iteration=4,
    members=2,
    epochs=5,
    walkers=2,
    steps=60,
    test_frames_per_condition=2,
)
FULL = Setup(
    seeds=3,
    iterations=5,
    per_iteration=4,
    members=4,
    epochs=30,
    walkers=4,
    steps=300,
    test_frames_per_condition=4,
)


# --------------------------------------------------------------------------- campaigns


def campaign_config(
    setup: Setup, method: str, seed: int, target_error_eV_A: float | None = None
) -> dict[str, Any]:
    """The campaign file of one run (a mapping for ``alflow run``).

    ``target_error_eV_A``: alflow's ``selection.target_force_error_eV_A``
    (None: the default of :class:`alflow.config.SelectionConfig`).
    """
    extra = {} if target_error_eV_A is None else {"target_force_error_eV_A": target_error_eV_A}
    return {
        "name": f"ce-{method}-s{seed}",
        "description": f"benchmarks/campaign_efficiency.py: {method}, seed {seed}",
        "initial": {
            "structures": [
                {"kind": "bulk", "symbol": "Cu", "crystalstructure": "fcc", "a_A": a}
                | {"cubic": False, "supercell": [2, 2, 2]}
                for a in LATTICE_A
            ],
            "n_rattled": 1,
            "n_holdout": 0,
            "rattle_stdev_A": 0.08,
            "strain_max": 0.02,
            "short_range": {"squeeze_factors": [0.8]},
        },
        "committee": {
            "members": setup.members,
            "seed": seed,
            "model": {"channels": 16, "max_L": 0, "r_max_A": 4.5},
            "training": {"epochs": setup.epochs, "batch_size": 4, "lr": 0.01},
        },
        "exploration": {
            "walkers": setup.walkers,
            "temperatures_K": list(CAMPAIGN_TEMPERATURES_K),
            "steps": setup.steps,
            "timestep_fs": 2.0,
            "sample_interval_steps": 10,
            "seed": seed,
        },
        "selection": {
            "strategy": STRATEGY[method],
            "trust_lo_eV_A": 0.05,
            "trust_hi_eV_A": 0.6,
            "max_per_iteration": setup.per_iteration,
            "seed": seed,
            **extra,
        },
        "labeling": {"oracle": {"code": "emt"}},
        "loop": {
            "max_iterations": setup.iterations,
            "max_dft_labels": 10_000,
            "converged_accurate_fraction": 1.0,
            "target_force_rmse_eV_A": 1e-9,
        },
        "final": {"epochs": setup.epochs, "validate_after": False},
    }


def run_campaign(
    setup: Setup,
    method: str,
    seed: int,
    workdir: Path,
    target_error_eV_A: float | None = None,
    processes: int = 2,
) -> Path:
    """Write the campaign file and run ``alflow run`` on a store in ``workdir``; return the store.

    ``processes``: its train/md workers (``ALFLOW_PARALLEL_PROCESSES``, unless
    the environment sets it).

    Raises
    ------
    RuntimeError
        ``alflow run`` failed (the tail of its log is in the message).
    """
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "campaign.yaml").write_text(
        yaml.safe_dump(campaign_config(setup, method, seed, target_error_eV_A))
    )
    store_dir = workdir / "alflow-store"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "ALFLOW_TORCH_THREADS": "1",
        "ALFLOW_PARALLEL_PROCESSES": os.environ.get("ALFLOW_PARALLEL_PROCESSES", str(processes)),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "alflow.cli",
        "run",
        "campaign.yaml",
        "--store",
        str(store_dir),
    ]
    with open(workdir / "run.log", "w") as log:
        done = subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = (workdir / "run.log").read_text().splitlines()[-15:]
        raise RuntimeError(f"alflow run failed in {workdir}:\n" + "\n".join(tail))
    return store_dir


# --------------------------------------------------------------------------- test set


def md_frames(
    temperature_K: float, strain: float, n: int, seed: int, stride: int = 25
) -> list[Any]:
    """EMT Langevin MD frames of 8-atom Cu (every ``stride`` steps of 2 fs after 100 steps)."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = bulk("Cu", "fcc", a=REFERENCE_A * (1.0 + strain)).repeat(2)
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():  # ASE's deprecation notes on these two
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature_K, friction=0.02, rng=rng)
    dyn.run(100)
    frames = []
    for _ in range(n):
        dyn.run(stride)
        frame = atoms.copy()
        frame.calc = None
        frame.arrays["forces_eV_A"] = atoms.get_forces().copy()
        inside = temperature_K <= max(CAMPAIGN_TEMPERATURES_K) and abs(strain) <= 0.02 + 1e-9
        frame.info["region"] = "inside" if inside else "beyond"
        frame.info["condition"] = f"{temperature_K:g} K, {strain:+.0%}"
        frames.append(frame)
    return frames


def make_test_set(frames_per_condition: int) -> list[Any]:
    """The benchmark's own test frames: every test temperature x strain, seeds 90000+."""
    frames: list[Any] = []
    grid = itertools.product(TEST_TEMPERATURES_K, TEST_STRAINS)
    for run, (temperature_K, strain) in enumerate(grid):
        frames += md_frames(temperature_K, strain, frames_per_condition, 90_000 + run)
    return frames


# --------------------------------------------------------------------------- curves


def _rmse(errors: list[np.ndarray]) -> float:
    return float(np.sqrt(np.mean(np.concatenate([e.ravel() for e in errors]) ** 2)))


def _evaluate(calc: Any, frames: list[Any]) -> dict[str, float]:
    """Force RMSE of the committee mean on the test frames: all, inside, beyond (eV/Å)."""
    errors: dict[str, list[np.ndarray]] = {"all": [], "inside": [], "beyond": []}
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calc
        error = atoms.get_forces() - frame.arrays["forces_eV_A"]
        errors["all"].append(error)
        errors[frame.info["region"]].append(error)
    return {
        "force_rmse_eV_A": _rmse(errors["all"]),
        "force_rmse_inside_eV_A": _rmse(errors["inside"]),
        "force_rmse_beyond_eV_A": _rmse(errors["beyond"]),
    }


def campaign_curve(store_dir: Path, campaign: str, frames: list[Any]) -> dict[str, Any]:
    """Every iteration's committee and the final fit of a finished campaign on the test set.

    Returns
    -------
    dict
        ``curve``: per committee ``iteration`` (int or ``"final"``), ``labels``
        (frames it was trained on), the force RMSEs; ``iterations``: per
        iteration what selection did and how the iteration was closed.
    """
    from alflow.settings import Settings
    from alflow.steps.context import StepContext
    from alflow.store import open_store
    from alflow.store.server import release_server
    from alflow.store.store import FINAL

    _connection, store = open_store(str(store_dir), create_indexes=False)
    try:
        config = store.campaign_config(campaign)
        workdir = Path(tempfile.mkdtemp(prefix="models-", dir=store_dir.parent))
        ctx = StepContext(store, config, Settings(torch_threads=1), workdir)
        curve = []
        for iteration in [*range(config.loop.max_iterations), FINAL]:
            models = store.trained_models(campaign, iteration)
            if len(models) < config.committee.members:  # not (yet) trained: a campaign running
                continue
            figures = _evaluate(ctx.load_committee(models), frames)
            labels = int(models[0]["n_frames"])
            curve.append({"iteration": iteration, "labels": labels, **figures})
        iterations = [
            {
                "iteration": d["iteration"],
                "selected": (d.get("selection") or {}).get("selected"),
                "audit": (d.get("selection") or {}).get("audit"),
                "explored": d.get("explored"),
                "accurate_fraction": d.get("accurate_fraction"),
                "rule": (d.get("decision") or {}).get("rule"),
            }
            for d in store.iteration_docs(campaign)
        ]
        temperatures = [
            (d.get("origin") or {}).get("temperature_K")
            for d in store.structures_of(campaign, status="labeled", fields=("origin",))
        ]
    finally:
        release_server(store_dir, quiet=True)
    hot = [t for t in temperatures if t is not None]
    return {
        "curve": curve,
        "iterations": iterations,
        "labeled_at_900K": (
            float(np.mean([t >= max(CAMPAIGN_TEMPERATURES_K) for t in hot])) if hot else None
        ),
    }


# --------------------------------------------------------------------------- main


def seed_runs(
    setup: Setup, seed: int, args: argparse.Namespace, base: Path, frames: list[Any]
) -> list[dict[str, Any]]:
    """Every method's campaign of one seed (``args.side_by_side`` at a time), and its curve.

    Side by side, each campaign gets 2 // side_by_side train/md workers (at
    least one), so the two cores stay shared the same way.
    """
    from concurrent.futures import ThreadPoolExecutor

    methods = args.methods.split(",")
    processes = max(1, 2 // args.side_by_side)

    def campaign(method: str) -> tuple[Path, float]:
        begun = time.monotonic()
        store_dir = run_campaign(
            setup, method, seed, base / f"{method}-s{seed}", args.target_error, processes
        )
        return store_dir, time.monotonic() - begun

    with ThreadPoolExecutor(args.side_by_side) as pool:  # each thread waits on its alflow run
        done = list(pool.map(campaign, methods))
    runs = []
    for method, (store_dir, wall_s) in zip(methods, done, strict=True):
        result = campaign_curve(store_dir, f"ce-{method}-s{seed}", frames)
        runs.append({"method": method, "seed": seed, "wall_s": round(wall_s, 1), **result})
        print(
            f"seed {seed} {method:>6}: "
            + " ".join(f"{p['labels']}:{p['force_rmse_eV_A']:.4f}" for p in result["curve"])
            + f" eV/Å (campaign {wall_s:.0f} s)",
            flush=True,
        )
    return runs


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny campaigns")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated (random, alflow)"
    )
    parser.add_argument("--target", type=float, default=None, help="target force RMSE (eV/Å)")
    parser.add_argument(
        "--target-error",
        type=float,
        default=None,
        help="alflow's selection.target_force_error_eV_A (default: the config's default)",
    )
    parser.add_argument(
        "--side-by-side",
        type=int,
        default=None,
        help="campaigns of one seed run at the same time (default: 2 with --quick, else 1)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="write the curves' figure here")
    parser.add_argument(
        "--partial", type=Path, default=None, help="rewrite the finished runs here after each"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the campaigns here")
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="*",
        default=(),
        help="summarise these --partial files (their runs) instead of running campaigns",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    args.side_by_side = args.side_by_side or (2 if args.quick else 1)
    setup = QUICK if args.quick else FULL
    overrides = {"seeds": args.seeds, "iterations": args.iterations}
    setup = Setup(**{**asdict(setup), **{k: v for k, v in overrides.items() if v}})
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    for path in args.runs:
        runs += json.loads(path.read_text())["runs"]
    if not args.runs:
        frames = make_test_set(setup.test_frames_per_condition)
        print(f"test set: {len(frames)} EMT MD frames ({time.monotonic() - started:.0f} s)")
        base = args.workdir or Path(tempfile.mkdtemp(prefix="campaign-efficiency-"))
        for seed in range(args.first_seed, args.first_seed + setup.seeds):
            runs += seed_runs(setup, seed, args, base, frames)
            print(f"seed {seed} done ({time.monotonic() - started:.0f} s in all)", flush=True)
            if args.partial:
                partial = {"setup": asdict(setup), "runs": runs}
                args.partial.write_text(json.dumps(partial, default=str))
    summary = summarize(runs, args.target)
    if args.plot:
        seeds = len({r["seed"] for r in runs})
        title = (
            f"whole alflow campaigns, 8-atom Cu, EMT labels, {seeds} seed(s), "
            f"{setup.per_iteration} labels/iteration, committee of {setup.members} MACE"
        )
        plot_curves(summary, args.plot, title)
    result = {
        "benchmark": "campaign_efficiency",
        "quick": args.quick,
        "setup": asdict(setup),
        "target_error_eV_A": args.target_error,
        "seeds": sorted({r["seed"] for r in runs}),
        **{k: v for k, v in summary.items() if k != "curves"},
        "curves": summary["curves"],
        "runs": [
            {k: r[k] for k in ("method", "seed", "wall_s", "iterations", "labeled_at_900K")}
            for r in runs
        ],
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, default=str))
    return result


if __name__ == "__main__":
    main()
