"""Exploration throughput: walkers in batches against independent ASE walkers.

Trains a 4-member tiny MACE committee on EMT-labeled fcc Cu with the helper
of ``benchmarks/committee_md.py`` (``train_models``: 16 channels, max_L 0,
r_max 4.5 Å, members on 10/20/40/40 frames; no download), then measures the
exploration throughput (atom·steps/s summed over all walkers; Langevin NVT
600 K, 2 fs, committee every 10 steps, frames every 10 steps, no stop) of K
walkers on fcc Cu cells of 32 and 108 atoms:

- ``independent``: the K walkers one after another, each with a
  :class:`~alflow.committee.CommitteeCalculator` of ``propagator = w mod M``
  (one-structure model calls; loaded before the clock starts) and
  :func:`~alflow.exploration.run_walker` — what K md Fireworks with
  ``walkers_per_job: 1`` do, without their process start-up;
- ``batched``: the same K walkers (same seeds, same propagating members
  w mod M) with :func:`~alflow.exploration.batched.run_walkers_batched`:
  one batched call per member and step;
- ``batched_one_member``: K walkers that all propagate member 0, as the
  builder makes a job's walkers when there are at least M × walkers_per_job
  walkers (it groups walkers by member): one batched call per step.

"On 2 cores" is measured as ``alflow run`` uses them: ``--processes 2
--threads 1`` (the defaults; ``parallel_processes: 2`` md workers with
``torch_threads: 1`` each). Walker w runs in process w mod P, so with P = 2
each process runs K/2 walkers, one after another (``independent``) or as one
batch (``batched``: ``walkers_per_job: K/2``). The rate is the atom·steps of
all walkers over the wall time from dispatch to the last process done.
``--processes 1 --threads 2`` runs everything in this process with two torch
threads (the earlier set-up of this benchmark): for these small models two
OpenMP threads make a one-structure call slower, not faster (32 atoms: 14 ms
with one thread, 25-42 ms with two, measured here), which flatters batching.

The methods alternate per (size, K) and repeat ``--repeats`` times (medians
reported). Every method runs its model calls from a worker thread (the
batched walkers must): on an oversubscribed 2-core machine, 2 OpenMP threads
driven from the main thread were measured 20-40 x slower than from a worker
thread.

Usage::

    python3 benchmarks/exploration.py --quick   # ~1-2 min on 2 cores
    python3 benchmarks/exploration.py           # K = 1, 4, 8, 32, longer runs

The last line is one JSON object: ``batched_speedup`` = {"32": {"1": x, "4": x,
...}, "108": {...}} (batched over independent, wall time),
``batched_speedup_one_member``, the raw ``atom_steps_per_s``, and the same
per CPU second of the measuring processes (``*_cpu_time``, ``atom_steps_per_cpu_s``):
on a machine shared with other jobs the wall figures swing with their load,
the CPU-time ones (with ``--threads 1``) hardly. ``--device cuda`` runs the same on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from committee_md import train_models  # the committee MD benchmark's models

from alflow.committee.mace_models import check_device
from alflow.testing import A_CU_A

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


def committees(paths: list[Path], args: Any) -> dict[str, Any]:
    """The calculators, loaded once (loading is not timed): one per propagating member
    for the independent walkers (reused, one walker after another), one shared."""
    from alflow.committee import load_committee

    options = {"device": args.device, "threads": args.threads, "dtype": args.dtype}
    return {
        "members": [load_committee(paths, propagator=m, **options) for m in range(len(paths))],
        "shared": load_committee(paths, **options),
    }


def run_method(
    method: str, calcs: dict[str, Any], n_atoms: int, walkers: list[int], steps: int
) -> tuple[float, float, float]:
    """Run ``walkers`` (their ids: seeds and starts) with ``method``.

    Returns
    -------
    (atom_steps, wall_s, cpu_s)
        Atom·steps summed over the walkers, and the wall and CPU time (s) of this process.
    """
    from alflow.exploration import run_walker
    from alflow.exploration.batched import BatchWalker, run_walkers_batched

    members = len(calcs["members"])
    starts = {w: start(n_atoms, w) for w in walkers}
    begin, begin_cpu = time.perf_counter(), time.process_time()
    if method == "independent":
        done = 0
        for w in walkers:
            result = run_walker(
                starts[w],
                calcs["members"][w % members],
                temperature_K=TEMPERATURE_K,
                steps=steps,
                seed=w,
                **WALKER,
            )
            done += result.steps_done
    else:
        batch = [
            BatchWalker(
                starts[w],
                TEMPERATURE_K,
                seed=w,
                propagator=0 if method == "batched_one_member" else w % members,
            )
            for w in walkers
        ]
        results = run_walkers_batched(batch, calcs["shared"], steps=steps, **WALKER)
        done = sum(r.steps_done for r in results)
    wall_s, cpu_s = time.perf_counter() - begin, time.process_time() - begin_cpu
    return n_atoms * done, wall_s, cpu_s


def in_thread(
    method: str, calcs: dict[str, Any], n_atoms: int, walkers: list[int], steps: int
) -> tuple[float, float, float]:
    """:func:`run_method` in a worker thread: every method runs its model calls from a
    non-main thread (the batched walkers must), so all see the same OpenMP set-up."""
    out: list[tuple[float, float, float]] = []
    worker = threading.Thread(
        target=lambda: out.append(run_method(method, calcs, n_atoms, walkers, steps))
    )
    worker.start()
    worker.join()
    if not out:
        raise RuntimeError(
            f"{method} failed at {n_atoms} atoms, walkers {walkers} (see the traceback above)"
        )
    return out[0]


# One process of the pool (--processes > 1): its calculators, loaded once by _init_child.
_CHILD: dict[str, Any] = {}


def loaded(paths: list[Path], args: Any) -> dict[str, Any]:
    """:func:`committees`, warmed up: first calls allocate and build caches (not timed)."""
    calcs = committees(paths, args)
    for method in METHODS:
        in_thread(method, calcs, 32, [0, 1], 10)
    return calcs


def _init_child(paths: list[Path], device: str, threads: int, dtype: str, ready: Any) -> None:
    """Load this worker process's calculators (:func:`loaded`), then wait at ``ready``
    until every worker has: no task runs before all of them are warm."""
    import torch

    torch.set_num_threads(threads)
    options = argparse.Namespace(device=device, threads=threads, dtype=dtype)
    _CHILD["calcs"] = loaded(paths, options)
    ready.wait()


def _child_run(
    method: str, n_atoms: int, walkers: list[int], steps: int
) -> tuple[float, float, float]:
    return in_thread(method, _CHILD["calcs"], n_atoms, walkers, steps)


class Runner:
    """Runs a method's K walkers in this process, or split over ``processes`` worker processes.

    With P processes, walker w runs in process w mod P (what P md workers of
    ``alflow run`` do with ``parallel_processes: P``): one after another there
    (``independent``) or as that process's batch (``batched*``, walkers_per_job
    K / P). The rate is the atom·steps of all walkers over the wall time from
    dispatch to the last process done; the CPU time is summed over the processes.
    """

    def __init__(self, paths: list[Path], args: Any) -> None:
        self.processes = args.processes
        if self.processes == 1:
            self.calcs = loaded(paths, args)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no fork after torch's threads
        self.pool = ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=_init_child,
            initargs=(
                paths,
                args.device,
                args.threads,
                args.dtype,
                context.Barrier(self.processes),
            ),
        )
        # one task per process starts them all (one is spawned per task while none is idle);
        # the barrier holds each in its initializer until all are warm
        list(self.pool.map(time.sleep, [0.0] * self.processes))

    def rate(self, method: str, n_atoms: int, k: int, steps: int) -> tuple[float, float]:
        """(atom·steps per wall second, per CPU second) of ``k`` walkers."""
        if self.processes == 1:
            atom_steps, wall_s, cpu_s = in_thread(
                method, self.calcs, n_atoms, list(range(k)), steps
            )
            return atom_steps / wall_s, atom_steps / cpu_s
        shares = [list(range(p, k, self.processes)) for p in range(self.processes)]
        begin = time.perf_counter()
        futures = [
            self.pool.submit(_child_run, method, n_atoms, share, steps) for share in shares if share
        ]
        outs = [f.result() for f in futures]
        wall_s = time.perf_counter() - begin
        atom_steps = sum(o[0] for o in outs)
        return atom_steps / wall_s, atom_steps / sum(o[2] for o in outs)

    def close(self) -> None:
        if self.processes > 1:
            self.pool.shutdown()


def measure(paths: list[Path], args: Any) -> dict[str, Any]:
    """Median atom·steps/s of every method, size and K (methods interleaved)."""
    ks = [1, 4, 8] if args.quick else [1, 4, 8, 32]
    if args.ks:
        ks = [int(k) for k in args.ks.split(",")]
    steps = {32: 20, 108: 10} if args.quick else {32: 60, 108: 30}
    runner = Runner(paths, args)
    rates: dict[str, dict[str, dict[str, float]]] = {}
    cpu_rates: dict[str, dict[str, dict[str, float]]] = {}
    for n_atoms in (32, 108):
        for k in ks:
            samples: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
            for r in range(args.repeats):
                order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
                for method in order:
                    samples[method].append(runner.rate(method, n_atoms, k, steps[n_atoms]))
            row = {m: round(statistics.median(x[0] for x in v), 1) for m, v in samples.items()}
            cpu_row = {m: round(statistics.median(x[1] for x in v), 1) for m, v in samples.items()}
            rates.setdefault(str(n_atoms), {})[str(k)] = row
            cpu_rates.setdefault(str(n_atoms), {})[str(k)] = cpu_row
            print(
                f"{n_atoms:4d} atoms K={k:3d}: wall {row}, CPU {cpu_row} atom*steps/s", flush=True
            )
    runner.close()
    return {"rates": rates, "cpu_rates": cpu_rates, "steps": steps, "ks": ks}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 1, 4, 8, short runs")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="worker processes, walker w in process w mod P (2: alflow run's md workers)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--ks", default=None, help="comma-separated K values")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the models here")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the models listed in --workdir/models.json"
    )
    args = parser.parse_args(argv)
    check_device(args.device)  # one line, before any training, when there is no such device
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

    def ratio(table: dict, method: str) -> dict[str, dict[str, float]]:
        return {
            n: {k: round(row[method] / row["independent"], 3) for k, row in by_k.items()}
            for n, by_k in table.items()
        }

    summary = {
        "batched_speedup": ratio(rates, "batched"),
        "batched_speedup_one_member": ratio(rates, "batched_one_member"),
        "batched_speedup_cpu_time": ratio(figures["cpu_rates"], "batched"),
        "batched_speedup_one_member_cpu_time": ratio(figures["cpu_rates"], "batched_one_member"),
        "atom_steps_per_s": rates,
        "atom_steps_per_cpu_s": figures["cpu_rates"],
        "baseline": f"K independent ASE walkers split over {args.processes} process(es), "
        "one after another in each, each with its own one-structure committee calls",
        "members": len(paths),
        "propagator": "walker w: member w mod M (batched_one_member: member 0)",
        "steps": {str(n): s for n, s in figures["steps"].items()},
        "processes": args.processes,
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
