"""Labeling step: fan-out over parallel slots, and GPAW time per frame against cores.

Two measurements on rattled fcc Al cells (PBE, plane waves):

1. Fan-out: L frames labeled on S parallel slots (S label jobs at a time,
   each its own GPAW process with one rank, as S dft workers would run
   them) against the ideal ``ceil(L/S) × t1``, where t1 is the median wall
   time of one job alone (timed before and after the fan-out, since the
   machine may be shared). ``fanout_efficiency = ceil(L/S) × t1 / wall``
   (1.0: perfect; below 1: the slots slow each other down: memory
   bandwidth, shared cores, start-up).
2. Cores: the median wall time of one frame with 1 and 2 MPI ranks
   (``mpiexec -n 2``), ``seconds_per_frame_by_cores``.

Usage::

    python benchmarks/labeling.py --quick      # about a minute on 2 cores
    python benchmarks/labeling.py              # PW(300), 8 frames, 3 repeats

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.build import bulk

from alflow.config import GPAWOracle
from alflow.labeling.gpaw_labeler import GPAWLabeler
from alflow.settings import Settings

log = logging.getLogger("benchmarks.labeling")


def frame(index: int, atoms_per_cell: int) -> Atoms:
    """A rattled Al cell (4 atoms cubic, or 8 as a 1x1x2 cubic supercell)."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    if atoms_per_cell == 8:
        atoms = atoms.repeat((1, 1, 2))
    atoms.rattle(0.05, seed=100 + index)
    return atoms


def label_once(oracle: GPAWOracle, ranks: int, atoms: Atoms, workdir: Path) -> float:
    """Wall time (s) of one label job, process start-up included."""
    labeler = GPAWLabeler(oracle, Settings(mpi_ranks=ranks))
    start = time.perf_counter()
    labeler.label(atoms, workdir)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small and short (~1 min)")
    parser.add_argument("--frames", type=int, help="L, frames of the fan-out run")
    parser.add_argument("--slots", type=int, default=2, help="S, parallel label jobs")
    parser.add_argument("--repeats", type=int, help="repeats of each single-job timing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")

    if args.quick:
        oracle = GPAWOracle(ecut_eV=200, kpts=(2, 2, 2), xc="PBE", max_retries=0)
        n_frames, repeats, atoms_per_cell = args.frames or 4, args.repeats or 2, 4
    else:
        oracle = GPAWOracle(ecut_eV=300, kpts=(4, 4, 4), xc="PBE", max_retries=0)
        n_frames, repeats, atoms_per_cell = args.frames or 8, args.repeats or 3, 4
    slots = args.slots
    counter = iter(range(10**6))
    with tempfile.TemporaryDirectory(prefix="alflow-bench-label-") as tmp:
        root = Path(tmp)

        def run(ranks: int) -> float:
            i = next(counter)
            return label_once(oracle, ranks, frame(i, atoms_per_cell), root / f"job{i:04d}")

        run(1)  # warm the file cache (Python, GPAW, setups)
        by_cores: dict[str, float] = {}
        spreads: dict[str, list[float]] = {}
        for ranks in (1, 2):
            times = [run(ranks) for _ in range(repeats)]
            by_cores[str(ranks)] = statistics.median(times)
            spreads[str(ranks)] = times
            log.info("%d rank(s): %s s per frame", ranks, " ".join(f"{t:.2f}" for t in times))
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=slots) as pool:
            job_times = list(pool.map(lambda _: run(1), range(n_frames)))
        wall_s = time.perf_counter() - start
        # the machine may be shared: time single jobs before and after the fan-out
        after = [run(1) for _ in range(repeats)]
        single_s = statistics.median(spreads["1"] + after)
        log.info("1 rank after the fan-out: %s s", " ".join(f"{t:.2f}" for t in after))
        ideal_s = math.ceil(n_frames / slots) * single_s
        log.info(
            "fan-out: %d frames on %d slots in %.2f s (ideal %.2f s = ceil(L/S) x %.2f s)",
            n_frames,
            slots,
            wall_s,
            ideal_s,
            single_s,
        )

    result: dict[str, Any] = {
        "benchmark": "labeling",
        "quick": bool(args.quick),
        "method": f"GPAW PBE PW({oracle.ecut_eV:g}) k {'x'.join(map(str, oracle.kpts))}, "
        f"rattled Al{atoms_per_cell}",
        "cpu_count": os.cpu_count(),
        "frames": n_frames,
        "slots": slots,
        "single_job_s": round(single_s, 3),
        "fanout_wall_s": round(wall_s, 3),
        "fanout_ideal_s": round(ideal_s, 3),
        "fanout_efficiency": round(ideal_s / wall_s, 3),
        "fanout_job_s_median": round(statistics.median(job_times), 3),
        "seconds_per_frame_by_cores": {k: round(v, 3) for k, v in by_cores.items()},
        "seconds_per_frame_runs": {k: [round(t, 3) for t in v] for k, v in spreads.items()},
        "speedup_2_cores": round(by_cores["1"] / by_cores["2"], 3),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
