"""Exploration throughput: walkers in batches against independent ASE walkers.

Trains a 4-member tiny MACE committee on EMT-labeled fcc Cu with the helper
of ``benchmarks/committee_md.py`` (``train_models``: 16 channels, max_L 0,
r_max 4.5 Å, members on 10/20/40/40 frames; no download), then measures the
exploration throughput (atom·steps/s summed over all walkers; Langevin NVT
600 K, 2 fs, committee every 10 steps, frames every 10 steps, no stop) of K
walkers on fcc Cu cells of 32 and 108 atoms:

- ``independent``: the K walkers run one after another in this process,
  each with its own :class:`~alflow.committee.CommitteeCalculator`
  (``propagator = w mod M``, one-structure model calls) and
  :func:`~alflow.exploration.run_walker` — what K md Fireworks with
  ``walkers_per_job: 1`` do, without their process start-up;
- ``batched``: the same K walkers (same seeds, same propagating members
  w mod M) with :func:`~alflow.exploration.batched.run_walkers_batched`:
  one batched call per member and step (walkers_per_job K);
- ``batched_one_member``: K walkers that all propagate member 0, as the
  builder makes a job's walkers when there are at least M × walkers_per_job
  walkers (it groups walkers by member): one batched call per step.

The methods alternate per (size, K) and repeat ``--repeats`` times (medians
reported). torch uses ``--threads`` threads (2: "on 2 cores") everywhere.

Usage::

    python3 benchmarks/exploration.py --quick   # ~1-2 min on 2 cores
    python3 benchmarks/exploration.py           # K = 1, 4, 8, 32, longer runs

The last line is one JSON object: ``batched_speedup`` = {"32": {"1": x, "4": x,
...}, "108": {...}} (batched over independent), ``batched_speedup_one_member``
and the raw ``atom_steps_per_s``. ``--device cuda`` runs the same on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from committee_md import train_models  # the committee MD benchmark's models

from alflow.committee.testing import A_CU_A

REPEATS = {32: 2, 108: 3}
METHODS = ("independent", "batched", "batched_one_member")
WALKER = {
    "timestep_fs": 2.0,
    "sample_interval_steps": 10,
    "committee_interval_steps": 10,
    "trust_hi_eV_A": float("inf"),
    "min_distance_A": 1.0,
    "max_temperature_factor": 100.0,
}
TEMPERATURE_K = 600.0


def start(n_atoms: int, walker: int) -> Atoms:
    """The walker's starting cell (each walker its own rattle)."""
    atoms = bulk("Cu", "fcc", a=A_CU_A, cubic=True).repeat((REPEATS[n_atoms],) * 3)
    atoms.rattle(0.02, seed=walker)
    return atoms


def run_method(
    method: str, paths: list[Path], n_atoms: int, k: int, steps: int, args: Any
) -> float:
    """Atom·steps/s summed over ``k`` walkers of ``n_atoms`` atoms."""
    from alflow.committee import load_committee
    from alflow.exploration import run_walker
    from alflow.exploration.batched import BatchWalker, run_walkers_batched

    options = {"device": args.device, "threads": args.threads, "dtype": args.dtype}
    members = len(paths)
    begin = time.perf_counter()
    if method == "independent":
        done = 0
        for w in range(k):
            calc = load_committee(paths, propagator=w % members, **options)
            result = run_walker(
                start(n_atoms, w),
                calc,
                temperature_K=TEMPERATURE_K,
                steps=steps,
                seed=w,
                **WALKER,
            )
            done += result.steps_done
    else:
        walkers = [
            BatchWalker(
                start(n_atoms, w),
                TEMPERATURE_K,
                seed=w,
                propagator=0 if method == "batched_one_member" else w % members,
            )
            for w in range(k)
        ]
        results = run_walkers_batched(
            walkers, load_committee(paths, **options), steps=steps, **WALKER
        )
        done = sum(r.steps_done for r in results)
    wall_s = time.perf_counter() - begin
    return n_atoms * done / wall_s


def measure(paths: list[Path], args: Any) -> dict[str, Any]:
    """Median atom·steps/s of every method, size and K (methods interleaved)."""
    ks = [1, 4, 8] if args.quick else [1, 4, 8, 32]
    if args.ks:
        ks = [int(k) for k in args.ks.split(",")]
    steps = {32: 20, 108: 10} if args.quick else {32: 60, 108: 30}
    for method in METHODS:  # warm-up: first calls allocate and build caches
        run_method(method, paths, 32, 2, 10, args)
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for n_atoms in (32, 108):
        for k in ks:
            samples: dict[str, list[float]] = {m: [] for m in METHODS}
            for r in range(args.repeats):
                order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
                for method in order:
                    samples[method].append(
                        run_method(method, paths, n_atoms, k, steps[n_atoms], args)
                    )
            row = {m: round(statistics.median(v), 1) for m, v in samples.items()}
            rates.setdefault(str(n_atoms), {})[str(k)] = row
            print(f"{n_atoms:4d} atoms K={k:3d}: {row} atom*steps/s", flush=True)
    return {"rates": rates, "steps": steps, "ks": ks}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 1, 4, 8, short runs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 cores)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--ks", default=None, help="comma-separated K values")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the models here")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the models listed in --workdir/models.json"
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 2)

    import torch

    torch.set_num_threads(args.threads)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="exploration_"))
    root.mkdir(parents=True, exist_ok=True)
    data_sizes = [10, 20, 40, 40]
    t0 = time.perf_counter()
    listing = root / "models.json"
    if args.reuse and listing.is_file():
        paths = [Path(p) for p in json.loads(listing.read_text())]
    else:
        paths, _ = train_models(root, 16, 3 if args.quick else 8, data_sizes)
        listing.write_text(json.dumps([str(p) for p in paths]))
    train_wall_s = time.perf_counter() - t0
    figures = measure(paths, args)
    rates = figures["rates"]

    def ratio(method: str) -> dict[str, dict[str, float]]:
        return {
            n: {k: round(row[method] / row["independent"], 3) for k, row in by_k.items()}
            for n, by_k in rates.items()
        }

    summary = {
        "batched_speedup": ratio("batched"),
        "batched_speedup_one_member": ratio("batched_one_member"),
        "atom_steps_per_s": rates,
        "baseline": "K independent ASE walkers run one after another in one process, "
        "each with its own one-structure committee calls",
        "members": len(paths),
        "propagator": "walker w: member w mod M (batched_one_member: member 0)",
        "steps": {str(n): s for n, s in figures["steps"].items()},
        "threads": args.threads,
        "device": args.device,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "quick": args.quick,
        "train_wall_s": round(train_wall_s, 1),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
