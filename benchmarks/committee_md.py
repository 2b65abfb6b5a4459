"""Committee MD throughput and MACE training time per epoch.

Trains tiny MACE models on EMT-labeled fcc Cu (32-atom cells, rattled and
strained) with alflow's ``train_member`` (4 runs on 10/20/40/40 frames, two
side by side, one thread each; no download), reads the time per epoch from
MACE's log, then measures MD throughput (atoms x steps / s, Langevin 300 K,
2 fs) on fcc Cu supercells of 32, 108 and 256 atoms with

a. one model: mace-torch's ``MACECalculator(model_paths=[one file])``;
b. the 4-member committee as mace-torch does it:
   ``MACECalculator(model_paths=[4 files])`` (committee mean every step);
c. alflow's committee walker: ``run_walker`` with
   ``load_committee(4 files, propagator=0)``: member 0 every step, the full
   committee every ``--interval`` steps (frames, uncertainty checks);

and, as a same-code reference for (c), alflow's calculator with one member
(``single_alflow``). The four methods are measured interleaved, ``--repeats``
times; medians are reported. torch runs ``--threads`` threads everywhere.

Usage::

    python3 benchmarks/committee_md.py --quick   # ~1-2 min on 2 cores
    python3 benchmarks/committee_md.py           # longer runs, more repeats

The last printed line is one JSON object with ``ratio_alflow_vs_single`` and
``ratio_mace_list_vs_single`` (108 atoms) and all the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alflow.committee.testing import A_CU_A, copper_frames, train_side_by_side
from alflow.config import MaceModelConfig, TrainingConfig

SIZES = {32: 2, 108: 3, 256: 4}
METHODS = ("single_mace", "mace_list", "alflow", "single_alflow")


_EPOCH = re.compile(r"^(\S+ \S+) INFO: Epoch (\d+):", re.MULTILINE)


def seconds_per_epoch(log_path: Path) -> float:
    """Median time between consecutive epoch reports of a MACE log (the first excluded)."""
    stamps = [
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
        for m in _EPOCH.finditer(log_path.read_text())
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    return statistics.median(gaps) if gaps else float("nan")


def train_models(
    root: Path, channels: int, epochs: int, sizes: list[int]
) -> tuple[list[Path], list[dict]]:
    """One model per data size, two trainings side by side with one thread each."""
    model = MaceModelConfig(
        channels=channels, max_L=0, r_max_A=4.5, num_interactions=2, correlation=2
    )
    training = TrainingConfig(epochs=epochs, batch_size=4, valid_fraction=0.2)
    frames = copper_frames(max(sizes), seed=0)
    jobs = [(frames[:n], i) for i, n in enumerate(sizes)]
    members = train_side_by_side(jobs, model=model, training=training, root=root)
    rows = [
        {
            "frames": n,
            "n_train": m.n_train,
            "s_per_epoch": seconds_per_epoch(Path(m.hyperparameters["log_path"])),
            "wall_s": m.wall_s,
        }
        for n, m in zip(sizes, members, strict=True)
    ]
    return [m.model_path for m in members], rows


def supercell(n_atoms: int) -> Atoms:
    return bulk("Cu", "fcc", a=A_CU_A, cubic=True).repeat((SIZES[n_atoms],) * 3)


def run_plain_md(atoms: Atoms, calc, steps: int) -> float:
    """Wall time of Langevin MD with a plain calculator (the first force call included)."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(0))
    start = time.perf_counter()
    dyn = Langevin(
        atoms,
        2.0 * units.fs,
        temperature_K=300.0,
        friction=0.01 / units.fs,
        rng=np.random.default_rng(1),
    )
    dyn.run(steps)
    return time.perf_counter() - start


def run_alflow_walker(atoms: Atoms, calc, steps: int, interval: int) -> tuple[float, int]:
    """Wall time and steps of alflow's walker (frames and checks every ``interval`` steps)."""
    from alflow.exploration import run_walker

    start = time.perf_counter()
    result = run_walker(
        atoms,
        calc,
        temperature_K=300.0,
        steps=steps,
        timestep_fs=2.0,
        sample_interval_steps=interval,
        seed=0,
        trust_hi_eV_A=float("inf"),
        min_distance_A=1.0,
        max_temperature_factor=100.0,
    )
    return time.perf_counter() - start, result.steps_done


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (~1-2 min)")
    parser.add_argument("--channels", type=int, default=16, help="MACE channels (16: quickstart)")
    parser.add_argument("--interval", type=int, default=10, help="alflow committee interval")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--workdir", type=Path, default=None, help="keep models here")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the models in --workdir (no training)"
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    epochs = 4 if args.quick else 8
    steps = {32: 60, 108: 30, 256: 20} if args.quick else {32: 200, 108: 100, 256: 50}
    steps = {n: max(args.interval, s // args.interval * args.interval) for n, s in steps.items()}

    import torch

    torch.set_num_threads(args.threads)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="committee_md_"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data_sizes = [10, 20, 40, 40]
    if args.reuse and args.workdir is not None:
        paths = [root / f"m{i}" / f"m{i}.model" for i in range(len(data_sizes))]
        training_rows = [
            {"frames": n, "s_per_epoch": seconds_per_epoch(p.with_suffix(".train.log"))}
            for n, p in zip(data_sizes, paths, strict=True)
        ]
    else:
        paths, training_rows = train_models(root, args.channels, epochs, data_sizes)
    train_wall_s = time.perf_counter() - t0
    for row in training_rows:
        print(f"training: {row['frames']:3d} frames: {row['s_per_epoch']:.2f} s/epoch")

    from mace.calculators import MACECalculator

    from alflow.committee import load_committee

    calcs = {
        "single_mace": MACECalculator(
            model_paths=[str(paths[0])], device="cpu", default_dtype="float32"
        ),
        "mace_list": MACECalculator(
            model_paths=[str(p) for p in paths], device="cpu", default_dtype="float32"
        ),
        "alflow": load_committee(paths, threads=args.threads, propagator=0),
        "single_alflow": load_committee(paths[:1], threads=args.threads),
    }

    def measure(method: str, n_atoms: int, n_steps: int) -> float:
        atoms = supercell(n_atoms)
        if method == "alflow":
            wall_s, done = run_alflow_walker(atoms, calcs[method], n_steps, args.interval)
        else:
            wall_s, done = run_plain_md(atoms, calcs[method], n_steps), n_steps
        return n_atoms * done / wall_s

    for method in METHODS:  # warm-up (first calls allocate and build caches)
        measure(method, 32, args.interval)
    samples: dict[tuple[int, str], list[float]] = {}
    for r in range(repeats):
        for n_atoms in SIZES:
            order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
            for method in order:
                rate = measure(method, n_atoms, steps[n_atoms])
                samples.setdefault((n_atoms, method), []).append(rate)
    throughput = {str(n): {m: statistics.median(samples[(n, m)]) for m in METHODS} for n in SIZES}
    print(f"MD throughput (atoms*steps/s, median of {repeats}, {args.threads} thread(s)):")
    print(f"{'atoms':>6} " + " ".join(f"{m:>14}" for m in METHODS) + "  alflow/single  list/single")
    for n in SIZES:
        row = throughput[str(n)]
        print(
            f"{n:>6} "
            + " ".join(f"{row[m]:14.0f}" for m in METHODS)
            + f"  {row['alflow'] / row['single_mace']:13.2f}"
            + f"  {row['mace_list'] / row['single_mace']:11.2f}"
        )
    ref = throughput["108"]
    summary = {
        "ratio_alflow_vs_single": round(ref["alflow"] / ref["single_mace"], 3),
        "ratio_mace_list_vs_single": round(ref["mace_list"] / ref["single_mace"], 3),
        "ratio_alflow_vs_single_alflow": round(ref["alflow"] / ref["single_alflow"], 3),
        "atoms_steps_per_s": {
            n: {m: round(v, 1) for m, v in row.items()} for n, row in throughput.items()
        },
        "ratios_vs_single": {
            n: {m: round(row[m] / row["single_mace"], 3) for m in METHODS}
            for n, row in throughput.items()
        },
        "train_s_per_epoch": [
            {"frames": r["frames"], "s_per_epoch": round(r["s_per_epoch"], 3)}
            for r in training_rows
        ],
        "train_wall_s": round(train_wall_s, 1),
        "members": len(paths),
        "channels": args.channels,
        "interval_steps": args.interval,
        "threads": args.threads,
        "repeats": repeats,
        "quick": args.quick,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
