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

d. alflow's shared-body committee walker (``committee.kind: shared_body``):
   member 0 of (c) and three members with its body and their own readouts
   (:func:`alflow.committee.readout_fit.train_readouts` on member 0's
   frames, seeds 1-3), ``load_shared_body_committee(4 files, propagator=0)``:
   member 0 every step, the other members' forces every ``--interval``
   steps as one batched backward pass through the body already run;

and, as a same-code reference for (c), alflow's calculator with one member
(``single_alflow``). The five methods are measured interleaved, ``--repeats``
times; medians are reported. torch runs ``--threads`` threads everywhere.
Besides wall-clock rates, the same runs' CPU-time rates (``time.process_time``)
give ``cpu_time_ratios_vs_single``: with one thread they equal the wall-clock
ratios on an idle machine and are much less moved by other jobs' load.

Calibration (``--calibration-rounds``, 2 by default; 0 skips it;
``--calibration-only`` runs nothing else): each kind's
committee is trained on EMT-labeled rattled cells (round 0: 8 frames), then
judged on newly labeled frames, EMT Langevin MD of the 32-atom cell at 600,
900 and 1200 K (4 frames each with ``--quick``, else 10; never trained on): Spearman correlation between the committee
deviation and the true force error, per frame (max force deviation against
the largest per-atom error of the committee mean) and per atom. Round r + 1
adds 8 of round r's new frames to the training set and is judged on fresh
MD frames. The independent committee is 4 members trained side by side
(seeds 0-3); the shared-body one is its member 0 and 3 readout fits; for the
shared body the per-atom energy deviation (free: no backward pass) is scored
too.

Usage::

    python3 benchmarks/committee_md.py --quick   # ~1-2 min on 2 cores
    python3 benchmarks/committee_md.py           # longer runs, more repeats
    python3 benchmarks/committee_md.py --device cuda --calibration-rounds 0   # MD on a GPU

On a GPU only the wall-clock ratios mean something (the CPU-time ones
measure the host thread).

The last printed line is one JSON object with ``ratio_alflow_vs_single``,
``ratio_mace_list_vs_single`` and ``ratio_shared_body_vs_single`` (108 atoms),
``calibration`` (per kind, per round) and all the figures.
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

from alflow.committee.mace_models import check_device
from alflow.config import MaceModelConfig, TrainingConfig
from alflow.testing import A_CU_A, copper_frames, train_side_by_side

SIZES = {32: 2, 108: 3, 256: 4}
METHODS = ("single_mace", "mace_list", "alflow", "single_alflow", "shared_body")
#: Methods that run alflow's walker (the others plain ASE Langevin).
WALKER_METHODS = ("alflow", "shared_body")


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


def train_shared_members(
    root: Path, member0: Path, frames: list, training: TrainingConfig, seeds: list[int]
) -> list[Path]:
    """Member 0 and readout fits on its frozen body (one per seed): a shared-body committee."""
    from alflow.committee.readout_fit import train_readouts

    paths = [member0]
    for seed in seeds:
        fitted = train_readouts(
            frames,
            base_model=member0,
            training=training,
            seed=seed,
            workdir=root / f"sb{seed}",
            name=f"sb{seed}",
        )
        paths.append(fitted.model_path)
    return paths


def emt_md_frames(temperatures_K: list[float], n_per_T: int, seed: int) -> list[Atoms]:
    """EMT Langevin MD frames of the 32-atom Cu cell (every 10 steps of 2 fs after 40)."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    frames = []
    for k, temperature_K in enumerate(temperatures_K):
        atoms = supercell(32)
        atoms.calc = EMT()
        rng = np.random.default_rng(seed * 100 + k)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature_K, friction=0.02, rng=rng)
        dyn.run(40)
        for _ in range(n_per_T):
            dyn.run(10)
            frame = atoms.copy()
            labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
            frame.calc = SinglePointCalculator(frame, **labels)
            frames.append(frame)
    return frames


def score_committee(calc, frames: list[Atoms]) -> dict:
    """Spearman of deviation against true force error on ``frames`` (frame and atom level)."""
    from alflow.calibration import frame_force_error_eV_A, spearman

    dev_frame, err_frame, dev_atom, err_atom, e_dev_frame, e_dev_atom = [], [], [], [], [], []
    for frame in frames:
        probe = frame.copy()
        probe.calc = calc
        probe.get_forces()
        results = calc.results
        reference = frame.calc.results["forces"]
        dev_frame.append(results["max_force_dev"])
        err_frame.append(frame_force_error_eV_A(results["forces"], reference))
        dev_atom += list(results["forces_std"])
        err_atom += list(np.linalg.norm(results["forces"] - reference, axis=1))
        if "atom_energy_std" in results:
            e_dev_frame.append(results["max_atom_energy_dev"])
            e_dev_atom += list(results["atom_energy_std"])
    row = {
        "spearman_frame": spearman(dev_frame, err_frame),
        "spearman_atom": spearman(dev_atom, err_atom),
        "mean_max_force_dev_eV_A": float(np.mean(dev_frame)),
        "force_rmse_eV_A": float(np.sqrt(np.mean(np.square(err_atom)) / 3)),
    }
    if e_dev_frame:
        row["spearman_frame_atom_energy_dev"] = spearman(e_dev_frame, err_frame)
        row["spearman_atom_atom_energy_dev"] = spearman(e_dev_atom, err_atom)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def calibration(
    root: Path, channels: int, epochs: int, rounds: int, threads: int, new_per_T: int = 4
) -> dict[str, list[dict]]:
    """Calibration of the independent and the shared-body committee, per round (see above)."""
    from alflow.committee import load_committee, load_shared_body_committee

    model = MaceModelConfig(
        channels=channels, max_L=0, r_max_A=4.5, num_interactions=2, correlation=2
    )
    training = TrainingConfig(epochs=epochs, batch_size=4, valid_fraction=0.2)
    train = copper_frames(8, seed=11)
    temperatures_K = [600.0, 900.0, 1200.0]
    out: dict[str, list[dict]] = {"independent": [], "shared_body": []}
    for r in range(rounds):
        new = emt_md_frames(temperatures_K, new_per_T, seed=20 + r)
        here = root / f"calibration_round{r}"
        members = train_side_by_side(
            [(train, s) for s in range(4)], model=model, training=training, root=here
        )
        paths = [m.model_path for m in members]
        shared = train_shared_members(here, paths[0], train, training, [1, 2, 3])
        for kind, calc in (
            ("independent", load_committee(paths, threads=threads)),
            ("shared_body", load_shared_body_committee(shared, threads=threads)),
        ):
            row = {"round": r, "n_train": len(train), "n_new": len(new)}
            row.update(score_committee(calc, new))
            out[kind].append(row)
            print(f"calibration round {r} {kind}: {row}")
        rng = np.random.default_rng(r)
        train = train + [new[i] for i in rng.choice(len(new), 8, replace=False)]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (~1-2 min)")
    parser.add_argument("--channels", type=int, default=16, help="MACE channels (16: quickstart)")
    parser.add_argument("--interval", type=int, default=10, help="alflow committee interval")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--device", default="cpu", help="torch device of the MD (cpu, cuda); training stays on cpu"
    )
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--workdir", type=Path, default=None, help="keep models here")
    parser.add_argument(
        "--calibration-rounds", type=int, default=2, help="calibration rounds (0: skip)"
    )
    parser.add_argument(
        "--calibration-only", action="store_true", help="only the calibration comparison"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the models in --workdir (no training)"
    )
    args = parser.parse_args(argv)
    check_device(args.device)  # one line, before any training, when there is no such device
    repeats = args.repeats or (2 if args.quick else 5)
    epochs = 4 if args.quick else 8
    new_per_T = 4 if args.quick else 10
    if args.calibration_only:
        root = args.workdir or Path(tempfile.mkdtemp(prefix="committee_md_"))
        rows = calibration(
            root, args.channels, epochs, max(args.calibration_rounds, 1), args.threads, new_per_T
        )
        summary = {"calibration": rows, "epochs": epochs, "new_frames_per_T": new_per_T}
        print(json.dumps(summary))
        return summary
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
    shared_training = TrainingConfig(epochs=epochs, batch_size=4, valid_fraction=0.2)
    shared_paths = train_shared_members(
        root,
        paths[0],
        copper_frames(max(data_sizes), seed=0)[: data_sizes[0]],
        shared_training,
        [1, 2, 3],
    )
    train_wall_s = time.perf_counter() - t0
    for row in training_rows:
        print(f"training: {row['frames']:3d} frames: {row['s_per_epoch']:.2f} s/epoch")

    from mace.calculators import MACECalculator

    from alflow.committee import load_committee, load_shared_body_committee

    on = {"threads": args.threads, "device": args.device}
    calcs = {
        "single_mace": MACECalculator(
            model_paths=[str(paths[0])], device=args.device, default_dtype="float32"
        ),
        "mace_list": MACECalculator(
            model_paths=[str(p) for p in paths], device=args.device, default_dtype="float32"
        ),
        "alflow": load_committee(paths, propagator=0, **on),
        "single_alflow": load_committee(paths[:1], **on),
        "shared_body": load_shared_body_committee(shared_paths, propagator=0, **on),
    }

    cpu_samples: dict[tuple[int, str], list[float]] = {}

    def measure(method: str, n_atoms: int, n_steps: int) -> float:
        """Wall-clock rate; the CPU-time rate goes to ``cpu_samples`` (robust to load)."""
        atoms = supercell(n_atoms)
        cpu0_s = time.process_time()
        if method in WALKER_METHODS:
            wall_s, done = run_alflow_walker(atoms, calcs[method], n_steps, args.interval)
        else:
            wall_s, done = run_plain_md(atoms, calcs[method], n_steps), n_steps
        cpu_s = time.process_time() - cpu0_s
        cpu_samples.setdefault((n_atoms, method), []).append(n_atoms * done / cpu_s)
        return n_atoms * done / wall_s

    for method in METHODS:  # warm-up (first calls allocate and build caches)
        measure(method, 32, args.interval)
    cpu_samples.clear()
    samples: dict[tuple[int, str], list[float]] = {}
    for r in range(repeats):
        for n_atoms in SIZES:
            order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
            for method in order:
                rate = measure(method, n_atoms, steps[n_atoms])
                samples.setdefault((n_atoms, method), []).append(rate)
    throughput = {str(n): {m: statistics.median(samples[(n, m)]) for m in METHODS} for n in SIZES}
    cpu_throughput = {
        str(n): {m: statistics.median(cpu_samples[(n, m)]) for m in METHODS} for n in SIZES
    }
    print(f"MD throughput (atoms*steps/s, median of {repeats}, {args.threads} thread(s)):")
    print(
        f"{'atoms':>6} "
        + " ".join(f"{m:>14}" for m in METHODS)
        + "  alflow/single  list/single  shared/single"
    )
    for n in SIZES:
        row = throughput[str(n)]
        print(
            f"{n:>6} "
            + " ".join(f"{row[m]:14.0f}" for m in METHODS)
            + f"  {row['alflow'] / row['single_mace']:13.2f}"
            + f"  {row['mace_list'] / row['single_mace']:11.2f}"
            + f"  {row['shared_body'] / row['single_mace']:13.2f}"
        )
    calibration_rows = (
        calibration(root, args.channels, epochs, args.calibration_rounds, args.threads, new_per_T)
        if args.calibration_rounds > 0
        else {}
    )
    ref = throughput["108"]
    summary = {
        "ratio_alflow_vs_single": round(ref["alflow"] / ref["single_mace"], 3),
        "ratio_mace_list_vs_single": round(ref["mace_list"] / ref["single_mace"], 3),
        "ratio_alflow_vs_single_alflow": round(ref["alflow"] / ref["single_alflow"], 3),
        "ratio_shared_body_vs_single": round(ref["shared_body"] / ref["single_mace"], 3),
        "ratio_shared_body_vs_single_alflow": round(ref["shared_body"] / ref["single_alflow"], 3),
        "ratio_shared_body_vs_alflow": round(ref["shared_body"] / ref["alflow"], 3),
        "cpu_time_ratio_shared_body_vs_single": round(
            cpu_throughput["108"]["shared_body"] / cpu_throughput["108"]["single_mace"], 3
        ),
        "cpu_time_ratio_alflow_vs_single": round(
            cpu_throughput["108"]["alflow"] / cpu_throughput["108"]["single_mace"], 3
        ),
        "calibration": calibration_rows,
        "atoms_steps_per_s": {
            n: {m: round(v, 1) for m, v in row.items()} for n, row in throughput.items()
        },
        "cpu_time_ratios_vs_single": {
            n: {m: round(row[m] / row["single_mace"], 3) for m in METHODS}
            for n, row in cpu_throughput.items()
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
        "device": args.device,
        "repeats": repeats,
        "quick": args.quick,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
