"""Store benchmark: the local MongoDB-wire server at 10^4-10^6 structures, vs the old mongomock file.

One campaign's ``structures`` (and its ``labels``) are grown on a local
server (``alflow.store.server.ensure_server``: ``secantusd-py
--sync-on-commit``, WiredTiger) to each size in turn, with documents shaped
exactly like the loop's (``atoms_to_doc``, ``structure_key``, the pymatgen
dict, walker origins, committee uncertainty and forces; GPAW-shaped labels
from ``LabelResult.to_doc``; statuses in the proportions the select and
label steps leave). Building uses ``insert_many`` batches directly. At each
size it measures:

- ``open``: stop the server, start it again on the same data, time to the
  first ping and to the first indexed query (warm OS page cache);
- ``walker``: a walker's save as the explore step does it
  (``Store.delete_unlabeled`` + ``Store.add_structures`` of 50 frames, one
  upsert each), frames per second;
- ``queries``: ``alflow db`` through ``alflow.query`` (``find`` with every
  filter of docs/query.md, ``count``, ``show``, ``stats``, ``campaigns``,
  1,000 labeled frames as ``ase.Atoms``), median of ``--repeats``; and two
  whole ``alflow db`` commands as subprocesses (Python start-up included);
- ``ops``: the single operations behind the misses: an indexed
  ``find_one`` against ``find_one_and_update`` (findAndModify) and
  ``update_one`` with the same filter, ``count_documents`` with an indexed
  filter.

Then the engine overhead per Firework: trivial Fireworks run one by one
through the worker's own loop (``alflow.workflow.worker.run_worker`` and
FireWorks' ``launch_rocket``) against the same server, each doing what every
alflow Firework does before its step (``alflow.workflow.tasks.step_context``:
settings, config validation, the worker's store, opened once per process), with a
fresh LaunchPad and with LaunchPads already holding ``--launchpad-sizes``
Fireworks. ``engine_overhead_fraction`` = Fireworks per iteration x seconds
per trivial Firework / iteration wall time (as if no overhead overlapped with
work: an upper bound), for the quickstart campaign: ``--full`` runs
``alflow run workflows/quickstart-emt.yaml`` and measures both, otherwise
``--iteration-wall-s`` and ``--fireworks-per-iteration`` (defaults from a
measured run, see docs/store.md).

"Today's figures": the old store (one mongomock ``.bson`` file, loaded whole,
rewritten whole after every Firework) measured in the same run at the first
size of at most 10^4 (``mongomock`` imported if installed, else skipped with
a note): opening the file, the same queries through mongomock, a walker's
save, and the whole-file save every Firework paid.

Usage::

    python3 benchmarks/store.py --quick       # 10^4 only (about a minute on 2 cores)
    python3 benchmarks/store.py               # 10^4 and 10^5
    python3 benchmarks/store.py --full        # 10^4, 10^5, 10^6 + a quickstart run
    python3 benchmarks/store.py --sizes 500   # a tiny run (the test)

The last line printed is one JSON object: per size ``open_s_<n>``,
``find_s_<n>`` (slowest filtered ``find``), ``stats_s_<n>``,
``walker_frames_per_s_<n>``... with ``<n>`` = ``10k``, ``100k``, ``1M``;
``engine_overhead_fraction``; ``mongomock_*`` for the old store; every
figure in ``sizes``, ``engine`` and ``mongomock``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from bson import ObjectId
from fireworks import FiretaskBase, FWAction, explicit_serialize
from pymongo import monitoring
from pymongo.errors import PyMongoError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alflow.labeling.base import LabelResult
from alflow.store.store import Store, utcnow
from alflow.structures import atoms_to_doc, pymatgen_dict, structure_key

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "workflows" / "quickstart-emt.yaml"
CAMPAIGN = "alcu-big"
DB_NAME = "alflow_bench"
#: Frames a campaign explores per iteration (20 walkers x 100 frames).
FRAMES_PER_ITERATION = 2000
FRAMES_PER_WALKER = 100
N_SEEDS = 50
#: A quickstart iteration, measured with --full (see docs/store.md): used without --full.
DEFAULT_ITERATION_WALL_S = 47.5
DEFAULT_FIREWORKS_PER_ITERATION = 12.5

# (status, fraction) of explored frames, as the select and label steps leave them
STATUS_MIX = (
    ("accurate", 0.60),
    ("candidate", 0.16),
    ("unphysical", 0.05),
    ("rejected", 0.03),
    ("labeled", 0.13),
    ("failed", 0.01),
    ("selected", 0.02),
)
PARAMETERS = {"xc": "PBE", "mode": {"name": "pw", "ecut": 300.0}, "kpts": [3, 3, 3]}
PARAMETERS_HASH = "b1946ac92492d2347c6235b4d2611184"


def size_label(n: int) -> str:
    """``10k``, ``100k``, ``1M`` (and ``500``, ``2500``...) for JSON keys."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# ---------------------------------------------------------------------------- documents
def templates() -> list[Atoms]:
    """Base cells of 4, 8, 16 and 32 atoms, pure Cu and Al-Cu (every 4th atom Al)."""
    cells = []
    for repeat in ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)):
        for alloy in (False, True):
            atoms = bulk("Cu", cubic=True).repeat(repeat)
            if alloy:
                symbols = atoms.get_chemical_symbols()
                for i in range(0, len(symbols), 4):
                    symbols[i] = "Al"
                atoms.set_chemical_symbols(symbols)
            cells.append(atoms)
    return cells


class DocFactory:
    """Loop-shaped structure and label documents of one campaign, document ``i`` at a time.

    Document ``i`` belongs to iteration ``(i - N_SEEDS) // FRAMES_PER_ITERATION``
    (the first ``N_SEEDS`` are seeds, iteration 0), walker and step follow
    from its position in the iteration. The per-frame fields are built with
    alflow's own builders (``atoms_to_doc``, ``structure_key``) and the
    pymatgen dict of the template cell with this frame's coordinates (the
    shape ``pymatgen_dict`` gives, without pymatgen's per-frame cost).
    """

    def __init__(self, campaign: str = CAMPAIGN, seed: int = 0) -> None:
        self.campaign, self.seed = campaign, seed
        self.cells = templates()
        self.pmg = [pymatgen_dict(t) for t in self.cells]
        self.statuses = [s for s, _ in STATUS_MIX]
        self.weights = np.array([w for _, w in STATUS_MIX])
        self.weights /= self.weights.sum()

    def iteration_of(self, i: int) -> int:
        return 0 if i < N_SEEDS else (i - N_SEEDS) // FRAMES_PER_ITERATION

    def batch(self, start: int, stop: int) -> tuple[list[dict], list[dict]]:
        """Structure and label documents ``start..stop-1`` (deterministic)."""
        rng = np.random.default_rng([self.seed, start])
        now = utcnow()
        structures: list[dict[str, Any]] = []
        labels: list[dict[str, Any]] = []
        for i in range(start, stop):
            index = int(rng.integers(len(self.cells)))
            atoms = self.cells[index].copy()
            atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
            n = len(atoms)
            seed_frame = i < N_SEEDS
            iteration = self.iteration_of(i)
            position = (i - N_SEEDS) % FRAMES_PER_ITERATION
            status = (
                "seed"
                if seed_frame
                else self.statuses[int(rng.choice(len(self.statuses), p=self.weights))]
            )
            key = structure_key(atoms)
            model_ids = [f"{self.campaign}/it{iteration:03d}/m{m:02d}" for m in range(4)]
            doc: dict[str, Any] = {
                "_id": ObjectId(),
                "campaign": self.campaign,
                "key": key,
                "iteration": iteration,
                "formula": atoms.get_chemical_formula(mode="hill"),
                "reduced_formula": atoms.get_chemical_formula(mode="hill", empirical=True),
                "elements": sorted(set(atoms.get_chemical_symbols())),
                "n_atoms": n,
                "atoms": atoms_to_doc(atoms),
                "structure": self._structure(index, atoms),
                "origin": {"kind": "seed", "index": i}
                if seed_frame
                else {
                    "kind": "walker",
                    "iteration": iteration,
                    "walker": position // FRAMES_PER_WALKER,
                    "step": 10 * (position % FRAMES_PER_WALKER),
                    "time_fs": 20.0 * (position % FRAMES_PER_WALKER),
                    "temperature_K": float(rng.choice([300.0, 600.0, 900.0, 1200.0])),
                    "pressure_GPa": None,
                    "ensemble": "nvt",
                    "instantaneous_temperature_K": float(rng.uniform(200, 1400)),
                    "start": "seed-0",
                    "model_ids": model_ids,
                    "propagator_member": (position // FRAMES_PER_WALKER) % 4,
                },
                "status": status,
                "reason": "min distance 0.61 Å < 0.75 Å" if status == "rejected" else None,
                "created": now,
                "updated": now,
            }
            if not seed_frame:
                dev = float(rng.lognormal(np.log(0.12), 0.8))
                doc["uncertainty"] = {"max_force_dev_eV_A": dev, "energy_std_eV": dev * 0.05}
                doc["committee"] = {
                    "energy_eV": float(-3.7 * n + rng.normal(0, 0.2)),
                    "forces_eV_A": rng.normal(0.0, 0.6, (n, 3)).tolist(),
                    "model_ids": model_ids,
                }
            if status in ("seed", "labeled", "failed"):
                label = self._label(rng, key, iteration, n, ok=status != "failed", now=now)
                labels.append(label)
                if status == "failed":
                    doc["reason"] = label["error"]
                else:
                    doc["label_id"] = label["_id"]
            structures.append(doc)
        return structures, labels

    def _structure(self, index: int, atoms: Atoms) -> dict[str, Any]:
        template = self.pmg[index]
        frac = np.linalg.solve(atoms.cell.T, atoms.positions.T).T
        sites = [
            {**site, "abc": abc, "xyz": xyz}
            for site, abc, xyz in zip(
                template["sites"], frac.tolist(), atoms.positions.tolist(), strict=True
            )
        ]
        return {**template, "sites": sites}

    def _label(
        self, rng: np.random.Generator, key: str, iteration: int, n: int, ok: bool, now: Any
    ) -> dict[str, Any]:
        provenance = {
            "workdir": f"/scratch/{self.campaign}/labels/{key}",
            "campaign": self.campaign,
            "iteration": iteration,
        }
        host = f"cn{int(rng.integers(1, 64)):03d}"
        cores = int(rng.choice([8, 16, 32]))
        if not ok:
            body = {
                "code": "gpaw",
                "parameters": PARAMETERS,
                "parameters_hash": PARAMETERS_HASH,
                "error": "KohnShamConvergenceError: SCF did not converge in 300 iterations",
                "host": host,
                "cores": cores,
                "attempts": [
                    {"attempt": a, "status": "scf_failed", "settings": {}, "error": "SCF"}
                    for a in range(3)
                ],
                "ok": False,
            }
        else:
            result = LabelResult(
                energy_eV=float(-3.7 * n + rng.normal(0, 0.3)),
                forces_eV_A=rng.normal(0.0, 0.5, (n, 3)),
                stress_eV_A3=rng.normal(0.0, 0.01, 6),
                magmoms_muB=None,
                converged=True,
                scf_iterations=int(rng.integers(12, 40)),
                wall_s=float(rng.uniform(20, 400)),
                cores=cores,
                host=host,
                code="gpaw",
                code_version="24.6.0",
                parameters=PARAMETERS,
                parameters_hash=PARAMETERS_HASH,
                attempts=[{"attempt": 0, "status": "ok", "settings": {}, "error": None}],
            )
            body = {**result.to_doc(), "ok": True}
        return {"_id": ObjectId(), **body, **provenance, "structure_key": key, "created": now}


def grow(store: Store, factory: DocFactory, start: int, stop: int, batch: int = 2000) -> float:
    """Insert documents ``start..stop-1`` in ``insert_many`` batches; return the wall time.

    A thread builds the next batch while the server inserts this one.
    """
    if stop <= start:
        return 0.0
    ranges = [(a, min(a + batch, stop)) for a in range(start, stop, batch)]
    ready: queue.Queue = queue.Queue(maxsize=2)

    def produce() -> None:
        for a, b in ranges:
            ready.put(factory.batch(a, b))

    began = time.perf_counter()
    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    for _ in ranges:
        structures, labels = ready.get()
        store.structures.insert_many(structures, ordered=False)
        if labels:
            store.labels.insert_many(labels, ordered=False)
    thread.join()
    return time.perf_counter() - began


def register_campaign(store: Store, name: str) -> None:
    """The campaign document, with the quickstart config as the loop's shape."""
    from alflow.config import load_campaign

    config = load_campaign(QUICKSTART).model_copy(update={"name": name})
    store.register_campaign(config)


# ---------------------------------------------------------------------------- timing
#: A call slower than this is not repeated (a 25 s scan says enough once).
REPEAT_BUDGET_S = 5.0


#: The store directory whose server the measurements use (revived if it dies under them).
SERVED: dict[str, Any] = {"store_dir": None, "program": "secantusd-py", "restarts": []}


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of up to ``repeats`` calls (fewer once they add up to
    ``REPEAT_BUDGET_S``), and the last result.

    A call that fails because the server went away (killed from outside, as
    happened once on the shared machine) is retried once after the server is
    started again on the same data and port; the restart is recorded.
    """
    times: list[float] = []
    result = None
    for _ in range(max(1, repeats)):
        began = time.perf_counter()
        try:
            result = function()
        except PyMongoError as exc:
            if not revive(exc):
                raise
            began = time.perf_counter()
            result = function()
        times.append(time.perf_counter() - began)
        if sum(times) > REPEAT_BUDGET_S:
            break
    return statistics.median(times), result


def revive(exc: Exception) -> bool:
    """Start the benchmark's server again if it died; True if it did (retry the call)."""
    from alflow.store.server import ensure_server, read_record

    store_dir = SERVED["store_dir"]
    if store_dir is None or read_record(store_dir) is not None:
        return False
    print(f"  (the server died under the benchmark: {type(exc).__name__}; starting it again)")
    ensure_server(store_dir, program=SERVED["program"], pin=True)
    SERVED["restarts"].append({"time": time.time(), "error": str(exc)[:200]})
    return True


class CommandTimes(monitoring.CommandListener):
    """Server round-trip time per command and collection (pymongo command monitoring)."""

    def __init__(self) -> None:
        self.active = False
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._names: dict[int, str] = {}

    def started(self, event: Any) -> None:
        if self.active:
            target = event.command.get(event.command_name)
            where = f" {target}" if isinstance(target, str) else ""
            self._names[event.request_id] = f"{event.command_name}{where}"

    def succeeded(self, event: Any) -> None:
        name = self._names.pop(event.request_id, None)
        if name is not None:
            self.seconds[name] += event.duration_micros / 1e6
            self.calls[name] += 1

    def failed(self, event: Any) -> None:
        self.succeeded(event)

    @contextlib.contextmanager
    def recording(self) -> Iterator[CommandTimes]:
        self.seconds.clear()
        self.calls.clear()
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def per(self, n: int) -> dict[str, dict[str, float]]:
        """Seconds and calls per unit (e.g. per Firework), slowest commands first."""
        return {
            name: {"s": round(s / n, 4), "calls": round(self.calls[name] / n, 1)}
            for name, s in self.seconds.most_common()
        }


COMMANDS = CommandTimes()
monitoring.register(COMMANDS)


# ---------------------------------------------------------------------------- server
def restart(
    store_dir: Path, client: Any, probe: Callable[[Any], Any]
) -> tuple[dict[str, float], Any]:
    """Stop the server, start it on the same data; time to ping and to the first query.

    ``client`` is closed first (pymongo's close waits for a server to end its sessions).
    """
    import pymongo

    from alflow.store.server import ensure_server, stop_server

    client.close()
    began = time.perf_counter()
    stop_server(store_dir)
    stopped = time.perf_counter()
    server = ensure_server(store_dir, program=SERVED["program"], pin=True)  # after its ping
    pinged = time.perf_counter()
    client: Any = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=30_000)
    probe(client[DB_NAME])
    queried = time.perf_counter()
    figures = {
        "stop_s": round(stopped - began, 3),
        "start_to_ping_s": round(pinged - stopped, 3),
        "start_to_first_query_s": round(queried - stopped, 3),
    }
    return figures, (server, client)


def point_query(key: str) -> Callable[[Any], Any]:
    """The first query after a restart: one structure by (campaign, key), the unique index."""

    def probe(db: Any) -> Any:
        doc = db["structures"].find_one({"campaign": CAMPAIGN, "key": key}, {"key": 1})
        if doc is None:
            raise RuntimeError(f"structure {key} missing after the restart")
        return doc

    return probe


# ---------------------------------------------------------------------------- walker saves
def walker_frames(rng: np.random.Generator, n: int) -> list[Atoms]:
    cell = templates()[7]  # 32-atom Al-Cu, the quickstart's size
    frames = []
    for _ in range(n):
        atoms = cell.copy()
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        frames.append(atoms)
    return frames


def walker_saves(store: Store, campaign: str, walkers: int, frames: int) -> dict[str, Any]:
    """Explore-step saves (delete the walker's unlabeled frames, then add_structures)."""
    rng = np.random.default_rng(12345)
    iteration = 10_000 + int(rng.integers(1_000_000))  # apart from the grown documents
    model_ids = [f"{campaign}/it{iteration:03d}/m{m:02d}" for m in range(4)]
    delete_s, add_s, new = [], [], 0
    for walker in range(walkers):
        atoms = walker_frames(rng, frames)
        keys = [structure_key(a) for a in atoms]
        origins = [
            {
                "kind": "walker",
                "iteration": iteration,
                "walker": walker,
                "step": 10 * j,
                "time_fs": 20.0 * j,
                "temperature_K": 600.0,
                "pressure_GPa": None,
                "ensemble": "nvt",
                "instantaneous_temperature_K": 612.0,
                "start": "seed-0",
                "model_ids": model_ids,
                "propagator_member": walker % 4,
            }
            for j in range(frames)
        ]
        extras = [
            {
                "uncertainty": {"max_force_dev_eV_A": 0.1, "energy_std_eV": 0.01},
                "committee": {
                    "energy_eV": -118.0,
                    "forces_eV_A": rng.normal(0.0, 0.6, (len(a), 3)).tolist(),
                    "model_ids": model_ids,
                },
            }
            for a in atoms
        ]
        began = time.perf_counter()
        store.delete_unlabeled(campaign, {"origin.iteration": iteration, "origin.walker": walker})
        deleted = time.perf_counter()
        new += store.add_structures(
            campaign,
            atoms,
            keys,
            iteration=iteration,
            status="explored",
            origins=origins,
            extras=extras,
        )
        delete_s.append(deleted - began)
        add_s.append(time.perf_counter() - deleted)
    store.structures.delete_many({"campaign": campaign, "iteration": iteration})
    total = sum(add_s)
    return {
        "walkers": walkers,
        "frames_per_walker": frames,
        "new_frames": new,
        "add_structures_s_per_walker": round(statistics.median(add_s), 4),
        "delete_unlabeled_s_per_walker": round(statistics.median(delete_s), 4),
        "frames_per_s": round(walkers * frames / total, 1) if total > 0 else None,
    }


# ---------------------------------------------------------------------------- queries
def query_cases(campaign: str, n: int) -> dict[str, dict[str, Any]]:
    """``alflow db find`` filters of docs/query.md (default limit 50 unless said)."""
    last = max(0, (n - N_SEEDS) // FRAMES_PER_ITERATION - 1)
    mid = last // 2
    return {
        "campaign (limit 50)": {"campaign": campaign},
        "formula AlCu3 (reduced)": {"campaign": campaign, "formula": "AlCu3"},
        "formula Cu32 (exact)": {"formula": "Cu32"},
        "elements Al,Cu": {"elements": "Al,Cu"},
        f"iteration {mid}": {"campaign": campaign, "iteration": mid},
        "status labeled": {"campaign": campaign, "status": "labeled"},
        "status failed,rejected": {"status": "failed,rejected"},
        "uncertainty 0.3-0.5 eV/Å": {"min_uncertainty_eV_A": 0.3, "max_uncertainty_eV_A": 0.5},
        "uncertainty >= 2.5 eV/Å (all rows)": {"min_uncertainty_eV_A": 2.5, "limit": 0},
        "energy -3.72:-3.68 eV/atom": {
            "campaign": campaign,
            "min_energy_eV_per_atom": -3.72,
            "max_energy_eV_per_atom": -3.68,
        },
        "energy -3.72:-3.68 + formula AlCu3": {
            "formula": "AlCu3",
            "min_energy_eV_per_atom": -3.72,
            "max_energy_eV_per_atom": -3.68,
        },
        "labeled-only + elements Al,Cu": {"elements": "Al,Cu", "labeled_only": True},
        f"iteration {last} + status candidate (all rows)": {
            "campaign": campaign,
            "iteration": last,
            "status": "candidate",
            "limit": 0,
        },
        "formula AlCu3 + status labeled + uncertainty <= 0.3": {
            "formula": "AlCu3",
            "status": "labeled",
            "max_uncertainty_eV_A": 0.3,
        },
    }


def open_query_database(uri: str, db_name: str) -> Any:
    """``alflow.query.open_database`` on the server (what ``alflow db`` opens)."""
    from alflow.query import open_database

    return open_database(uri, db_name=db_name)


def measure_queries(db: Any, campaign: str, n: int, repeats: int) -> dict[str, Any]:
    """Every ``alflow db`` query through ``alflow.query`` (median of ``repeats``)."""
    from alflow.query import StructureQuery

    finds: dict[str, Any] = {}
    for name, filters in query_cases(campaign, n).items():
        limit = filters.pop("limit", 50)
        query = StructureQuery(**filters, limit=limit)
        seconds, rows = timed(lambda q=query: list(db.find(q)), repeats)
        finds[name] = {"s": round(seconds, 4), "rows": len(rows)}
    other: dict[str, Any] = {}
    query = StructureQuery(campaign=campaign, status="labeled")
    seconds, count = timed(lambda: db.count(query), repeats)
    other["count campaign+status labeled"] = {"s": round(seconds, 4), "rows": count}
    key = next(iter(db.find(StructureQuery(campaign=campaign, status="labeled", limit=1))))["key"]
    seconds, shown = timed(lambda: db.show(key[:8]), repeats)
    other["show KEYPREFIX"] = {"s": round(seconds, 4), "rows": len(shown)}
    seconds, frames = timed(
        lambda: sum(1 for _ in db.atoms(StructureQuery(status="labeled", limit=1000))), repeats
    )
    other["atoms: 1000 labeled frames"] = {"s": round(seconds, 4), "rows": frames}
    seconds, stats = timed(lambda: db.stats(campaign), repeats)
    other["stats --campaign"] = {"s": round(seconds, 4), "rows": stats["n_structures"]}
    seconds, rows = timed(lambda: db.campaigns(), repeats)
    other["campaigns"] = {"s": round(seconds, 4), "rows": len(rows)}
    return {"find": finds, "other": other}


def measure_cli(uri: str, db_name: str, campaign: str) -> dict[str, float]:
    """Whole ``alflow db`` commands as a user runs them (Python start-up included)."""
    env = {**os.environ, "ALFLOW_STORE_NAME": db_name}
    commands = {
        "alflow db find --formula AlCu3 --status labeled": [
            "find",
            "--campaign",
            campaign,
            "--formula",
            "AlCu3",
            "--status",
            "labeled",
        ],
        "alflow db stats --campaign": ["stats", "--campaign", campaign],
        "alflow --help (start-up only)": None,
    }
    out: dict[str, float] = {}
    for name, argv in commands.items():
        full = (
            [sys.executable, "-m", "alflow.cli", "--help"]
            if argv is None
            else [sys.executable, "-m", "alflow.cli", "db", *argv, "--store", uri]
        )
        began = time.perf_counter()
        done = subprocess.run(full, env=env, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            print(f"  (command {name} failed: {tail[0]})")
            continue
        out[name] = round(seconds, 3)
    return out


def measure_ops(store: Store, campaign: str, repeats: int) -> dict[str, float]:
    """Single operations on ``structures``: indexed find vs findAndModify vs update, counts."""
    doc = store.structures.find_one({"campaign": campaign, "status": "candidate"}, {"key": 1})
    flt = {"campaign": campaign, "key": doc["key"]}
    now = utcnow()
    ops = {
        "find_one (campaign, key)": lambda: store.structures.find_one(flt, {"_id": 1}),
        "update_one (campaign, key)": lambda: store.structures.update_one(
            flt, {"$set": {"updated": now}}
        ),
        "find_one_and_update (campaign, key)": lambda: store.structures.find_one_and_update(
            flt, {"$set": {"updated": now}}, projection={"_id": 1}
        ),
        "count_documents (campaign, status)": lambda: store.structures.count_documents(
            {"campaign": campaign, "status": "labeled"}
        ),
        "count_documents (campaign, iteration, status)": lambda: store.structures.count_documents(
            {"campaign": campaign, "iteration": 0, "status": "seed"}
        ),
        "estimated_document_count": lambda: store.structures.estimated_document_count(),
    }
    return {name: round(timed(op, repeats)[0], 4) for name, op in ops.items()}


def query_plans(store: Store, campaign: str) -> dict[str, Any]:
    """The server's own account of a few ``alflow db find`` filters (``explain``, limit 50).

    ``examined`` documents against ``returned`` shows whether the limit stops
    the scan, ``stage`` whether an index serves the filter.
    """
    filters = {
        "campaign": {"campaign": campaign},
        "campaign + status": {"campaign": campaign, "status": "labeled"},
        "campaign + reduced_formula": {"campaign": campaign, "reduced_formula": "AlCu3"},
        "status": {"status": "labeled"},
    }
    out: dict[str, Any] = {}
    for name, flt in filters.items():
        plan = store.structures.find(flt, {"key": 1}).limit(50).explain()
        winning = plan.get("queryPlanner", {}).get("winningPlan", {})
        while "inputStage" in winning and winning.get("stage") in (
            "LIMIT",
            "FETCH",
            "PROJECTION",
            "PROJECTION_SIMPLE",
        ):
            winning = winning["inputStage"]
        stats = plan.get("executionStats", {})
        out[name] = {
            "stage": winning.get("stage"),
            "index": winning.get("indexName"),
            "examined": stats.get("totalDocsExamined"),
            "returned_before_limit": stats.get("nReturned"),
            "server_ms": stats.get("executionTimeMillis"),
        }
    return out


def loop_queries(store: Store, campaign: str, n: int, repeats: int) -> dict[str, Any]:
    """The store queries the loop's own Fireworks make once per iteration, as they make them.

    ``select`` (alflow/steps/select.py), ``collect`` (alflow/steps/collect.py)
    and ``alflow status`` (alflow/report/status.py), on the last iteration.
    """
    from alflow.store.store import CLASSIFIED_STATUSES

    it = max(0, (n - N_SEEDS) // FRAMES_PER_ITERATION - 1)
    s = store.structures
    steps: dict[str, dict[str, Callable[[], Any]]] = {
        "select": {
            "count_labels": lambda: store.count_labels(campaign),
            "explored frames (find)": lambda: list(
                store.structures_of(
                    campaign,
                    iteration=it,
                    status="explored",
                    fields=("key", "atoms", "uncertainty", "committee"),
                )
            ),
            "pending selected (count)": lambda: s.count_documents(
                {"campaign": campaign, "iteration": {"$lt": it}, "status": "selected"}
            ),
            "holdout (count)": lambda: s.count_documents(
                {"campaign": campaign, "status": "holdout"}
            ),
        },
        "collect": {
            "status counts (7 x count)": lambda: [
                s.count_documents(
                    {
                        "campaign": campaign,
                        "iteration": it,
                        "status": status,
                        "origin.kind": "walker",
                    }
                )
                for status in CLASSIFIED_STATUSES
            ],
            "labeled frames with committee (find)": lambda: list(
                store.labeled_frames_of_iteration(campaign, it)
            ),
            "audit (count)": lambda: s.count_documents(
                {"campaign": campaign, "iteration": it, "audit": True}
            ),
        },
        "alflow status": {
            "per-status counts": lambda: {
                status: s.count_documents({"campaign": campaign, "status": status})
                for status in s.distinct("status", {"campaign": campaign})
            },
        },
    }
    out: dict[str, Any] = {"iteration": it}
    for step, queries in steps.items():
        rows = {name: round(timed(q, repeats)[0], 4) for name, q in queries.items()}
        out[step] = {"queries": rows, "total_s": round(sum(rows.values()), 4)}
    return out


# ---------------------------------------------------------------------------- engine overhead
@explicit_serialize
class StepOverheadTask(FiretaskBase):
    """What every alflow Firework does before its step (``step_context``: settings, config
    validation, the worker process's store, opened once), then one campaign lookup."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from alflow.workflow.tasks import step_context

        if fw_spec.get("bare"):
            return FWAction(stored_data={"bare": True})
        ctx = step_context(fw_spec)
        ctx.store.campaign(ctx.config.name)
        return FWAction(stored_data={"campaign": ctx.config.name})


def _fill_launchpad(launchpad: Any, template_fw: dict, template_launch: dict, n: int) -> None:
    """Add ``n`` COMPLETED Fireworks (each its workflow and launch), cloned from a real one."""
    if n <= 0:
        return
    first = launchpad.get_new_fw_id(quantity=n)
    first_launch = launchpad.get_new_launch_id()
    for a in range(0, n, 2000):
        ids = range(first + a, first + min(a + 2000, n))
        fws, launches, wfs = [], [], []
        for k, fw_id in enumerate(ids):
            launch_id = first_launch + 1 + a + k
            fw = {key: v for key, v in template_fw.items() if key != "_id"}
            fw.update(fw_id=fw_id, launches=[launch_id], name=f"filler {fw_id}")
            fw["spec"] = {**fw["spec"], "campaign": "filler"}
            launch = {key: v for key, v in template_launch.items() if key != "_id"}
            launch.update(fw_id=fw_id, launch_id=launch_id)
            wf = {
                "name": f"filler {fw_id}",
                "metadata": {"campaign": "filler"},
                "nodes": [fw_id],
                "links": {str(fw_id): []},
                "parent_links": {},
                "state": "COMPLETED",
                "created_on": fw.get("created_on"),
                "updated_on": fw.get("updated_on"),
                "fw_states": {str(fw_id): "COMPLETED"},
            }
            fws.append(fw)
            launches.append(launch)
            wfs.append(wf)
        launchpad.fireworks.insert_many(fws)
        launchpad.launches.insert_many(launches)
        launchpad.workflows.insert_many(wfs)
    launchpad.fw_id_assigner.update_one({}, {"$set": {"next_launch_id": first_launch + n + 1}})


def _trivial_workflow(config: Any, n: int, bare: bool) -> Any:
    from fireworks import Firework, Workflow

    spec = {
        "campaign": config.name,
        "iteration": 0,
        "step": "bench",
        "config": config.model_dump(mode="json"),
        "_category": "service",
        "bare": bare,
    }
    fws = [Firework([StepOverheadTask()], spec=dict(spec), name=f"bench {i}") for i in range(n)]
    return Workflow(fws, name=f"{config.name} bench", metadata={"campaign": config.name})


def launchpad_probes(launchpad: Any, worker_query: dict[str, Any]) -> dict[str, float]:
    """The runner's poll (every second), an idle worker's poll, find vs findAndModify by fw_id."""
    fireworks = launchpad.fireworks
    projection = {"fw_id": 1, "name": 1, "state": 1, "updated_on": 1, "spec.iteration": 1}
    fw_id = fireworks.find_one({}, {"fw_id": 1}, sort=[("fw_id", -1)])["fw_id"]
    probes = {
        "runner_poll_s": lambda: list(fireworks.find(worker_query, projection)),
        "worker_idle_poll_s": lambda: fireworks.find_one(
            {**worker_query, "state": "READY"},
            {"fw_id": 1},
            sort=[("spec._priority", -1), ("fw_id", 1)],
        ),
        "fireworks_find_one_fw_id_s": lambda: fireworks.find_one({"fw_id": fw_id}, {"_id": 1}),
        "fireworks_find_one_and_update_fw_id_s": lambda: fireworks.find_one_and_update(
            {"fw_id": fw_id}, {"$set": {"bench": 1}}, projection={"_id": 1}
        ),
        "fireworks_count_state_s": lambda: fireworks.count_documents({"state": "COMPLETED"}),
    }
    return {name: round(timed(probe, 5)[0], 4) for name, probe in probes.items()}


def engine_overhead(
    connection: Any, scratch: Path, n: int, launchpad_sizes: list[int], store_name: str
) -> dict[str, Any]:
    """Seconds per trivial Firework through the worker loop, per LaunchPad size."""
    from fireworks import FWorker
    from fireworks.core import rocket

    from alflow.config import load_campaign
    from alflow.settings import Settings
    from alflow.workflow.launchpad import open_launchpad
    from alflow.workflow.worker import run_worker

    rocket.ROCKET_STREAM_LOGLEVEL = "ERROR"  # FireWorks' per-launch INFO lines off stdout
    config = load_campaign(QUICKSTART).model_copy(update={"name": "bench-engine"})
    Store(connection.client[store_name]).register_campaign(config)
    # the worker's settings reach each Firework as _fw_env (alflow.workflow.worker.main)
    settings = Settings(store=connection.uri, store_name=store_name, scratch_dir=str(scratch))
    results: dict[str, Any] = {}
    template: tuple[dict, dict] | None = None
    for size in launchpad_sizes:
        name = f"fw_bench_{size}_{os.getpid()}"
        connection.client.drop_database(name)
        launchpad = open_launchpad(connection, name, strm_lvl="ERROR")
        if size and template is not None:
            _fill_launchpad(launchpad, *template, size)
        fworker = FWorker(
            name="bench-worker",
            category=["service"],
            query={"spec.campaign": config.name},
            env=settings.model_dump(),
        )
        row: dict[str, Any] = {
            "launchpad_fireworks_before": launchpad.fireworks.count_documents({})
        }
        for bare in (True, False):
            launchpad.add_wf(_trivial_workflow(config, n, bare))
            with COMMANDS.recording() as commands:
                began = time.perf_counter()
                ran = run_worker(launchpad, fworker, scratch / name, idle_s=0.01, max_launches=n)
                wall = time.perf_counter() - began
            kind = "fireworks_only" if bare else "alflow_firework"
            row[f"{kind}_s_per_fw"] = round(wall / max(ran, 1), 4)
            row[f"{kind}_commands_per_fw"] = commands.per(max(ran, 1))
            row[f"{kind}_ran"] = ran
        states = Counter(d["state"] for d in launchpad.fireworks.find({}, {"state": 1}))
        row["states"] = dict(states)
        row.update(launchpad_probes(launchpad, fworker.query))
        if template is None:  # the next LaunchPads are filled with clones of a real one
            fw = launchpad.fireworks.find_one({"state": "COMPLETED", "spec.bare": False})
            launch = launchpad.launches.find_one({"fw_id": fw["fw_id"]})
            template = (fw, launch)
        results[str(size)] = row
        connection.client.drop_database(name)
    return results


def quickstart_iteration(workdir: Path) -> dict[str, Any]:
    """Run the quickstart campaign with ``alflow run``; wall time and Fireworks per iteration."""
    import pymongo

    store_dir = workdir / "quickstart-store"
    env = {
        **os.environ,
        "ALFLOW_STORE": str(store_dir),
        "ALFLOW_LOCAL_SERVER": SERVED["program"],
        "ALFLOW_SCRATCH_DIR": str(workdir / "quickstart-scratch"),
    }
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "alflow.cli", "run", str(QUICKSTART)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=workdir,
    )
    total = time.perf_counter() - began
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": " / ".join(tail), "wall_s": round(total, 1)}
    from alflow.store.server import ensure_server, stop_server

    server = ensure_server(store_dir, program=SERVED["program"], pin=True)
    client: Any = pymongo.MongoClient(server.uri)
    try:
        per: dict[int, list[dict]] = defaultdict(list)
        runtimes = {
            d["fw_id"]: d
            for d in client["fireworks"]["launches"].find(
                {}, {"fw_id": 1, "time_start": 1, "time_end": 1, "runtime_secs": 1}
            )
        }
        for fw in client["fireworks"]["fireworks"].find({}, {"fw_id": 1, "spec.iteration": 1}):
            launch = runtimes.get(fw["fw_id"])
            if launch is not None:
                per[int(fw["spec"]["iteration"])].append(launch)
        iterations = {}
        for it, launches in sorted(per.items()):
            start = min(_stamp(x["time_start"]) for x in launches)
            end = max(_stamp(x["time_end"]) for x in launches)
            iterations[it] = {
                "fireworks": len(launches),
                "wall_s": round(end - start, 1),
                "busy_s": round(sum(float(x.get("runtime_secs") or 0) for x in launches), 1),
            }
    finally:
        client.close()
        stop_server(store_dir)
    later = [v for k, v in iterations.items() if k > 0] or list(iterations.values())
    return {
        "campaign_wall_s": round(total, 1),
        "iterations": iterations,
        "iteration_wall_s": round(statistics.median(v["wall_s"] for v in later), 1),
        "fireworks_per_iteration": round(statistics.median(v["fireworks"] for v in later), 1),
    }


def _stamp(value: Any) -> float:
    from datetime import datetime

    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return value.timestamp()


# ---------------------------------------------------------------------------- the old store
def mongomock_figures(
    docs: dict[str, list[dict]],
    workdir: Path,
    campaign: str,
    n: int,
    repeats: int,
    energy: bool = True,
) -> dict[str, Any]:
    """The old one-file mongomock store at this size: open, queries, walker save, file save.

    The file is written and read in the format of the old
    ``alflow.store.embedded`` (header, then per collection its indexes and
    documents), loaded the way the old ``alflow db`` did (documents first,
    indexes after: mongomock checks a unique index by scanning).
    """
    import bson
    import mongomock
    import mongomock.gridfs

    mongomock.gridfs.enable_gridfs_integration()
    path = workdir / "old-store.bson"
    magic = {"format": "alflow-embedded-store", "version": 1}

    def save(client: Any) -> None:  # the old EmbeddedServer.save, after every Firework
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(bson.encode(magic))
            for db_name in client.list_database_names():
                for coll_name in client[db_name].list_collection_names():
                    collection = client[db_name][coll_name]
                    info = {
                        name: {"key": [list(k) for k in spec["key"]]}
                        | {k: v for k, v in spec.items() if k in ("unique", "sparse")}
                        for name, spec in collection.index_information().items()
                    }
                    record = {"db": db_name, "coll": coll_name, "indexes": info}
                    handle.write(bson.encode(record))
                    for doc in collection.find():
                        handle.write(bson.encode({"db": db_name, "coll": coll_name, "doc": doc}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def load() -> Any:  # the old loader (alflow db's read-only snapshot, EmbeddedServer._load)
        client: Any = mongomock.MongoClient()
        batches: dict[tuple[str, str], list[dict]] = defaultdict(list)
        indexes = []
        with open(path, "rb") as handle:
            records = bson.decode_file_iter(handle)
            next(records)
            for record in records:
                if "doc" in record:
                    batches[(record["db"], record["coll"])].append(record["doc"])
                else:
                    indexes.append(record)
        for (db_name, coll_name), batch in batches.items():
            client[db_name][coll_name].insert_many(batch)
        for record in indexes:
            collection = client[record["db"]][record["coll"]]
            for name, spec in record["indexes"].items():
                if name != "_id_":
                    options = {k: v for k, v in spec.items() if k in ("unique", "sparse")}
                    collection.create_index([tuple(k) for k in spec["key"]], name=name, **options)
        return client

    # write the file once from a mongomock copy of the server's documents
    client: Any = mongomock.MongoClient()
    for coll_name, batch in docs.items():
        if batch:
            client[DB_NAME][coll_name].insert_many([dict(d) for d in batch])
    Store(client[DB_NAME]).ensure_indexes()
    began = time.perf_counter()
    save(client)
    out: dict[str, Any] = {
        "n_structures": n,
        "file_MB": round(path.stat().st_size / 1e6, 1),
        "save_s_per_firework": round(time.perf_counter() - began, 3),
    }
    del client
    began = time.perf_counter()
    client = load()
    out["open_s"] = round(time.perf_counter() - began, 3)
    store = Store(client[DB_NAME])
    out["walker"] = walker_saves(store, campaign, walkers=1, frames=20)
    db = query_database(client, "mongomock (old store file)")
    from alflow.query import StructureQuery

    finds: dict[str, Any] = {}
    for name, filters in query_cases(campaign, n).items():
        limit = filters.pop("limit", 50)
        query = StructureQuery(**filters, limit=limit)
        if query.has_energy_range and not energy:
            finds[name] = {"s": None, "rows": None, "skipped": "--quick: mongomock's $lookup"}
            continue
        seconds, rows = timed(
            lambda q=query: list(db.find(q)), 1 if query.has_energy_range else repeats
        )
        finds[name] = {"s": round(seconds, 4), "rows": len(rows)}
    seconds, stats = timed(lambda: db.stats(campaign), 1)
    out["queries"] = {
        "find": finds,
        "other": {"stats --campaign": {"s": round(seconds, 4), "rows": stats["n_structures"]}},
    }
    path.unlink(missing_ok=True)
    return out


def query_database(client: Any, uri: str) -> Any:
    """``alflow.query.Database`` over a client (a live mongomock one: its plain queries)."""
    from alflow.query import api
    from alflow.store.connection import Connection
    from alflow.store.query_filters import MongoEngine

    db = client[DB_NAME]
    return api.Database(Connection(client=client, uri=uri), Store(db), MongoEngine(db))


# ---------------------------------------------------------------------------- driver
def read_back(store: Store) -> dict[str, list[dict]]:
    return {
        "structures": list(store.structures.find()),
        "labels": list(store.labels.find()),
        "campaigns": list(store.campaigns.find()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Grow the store to each size, measure, then the engine overhead and the old store."""
    import pymongo

    from alflow.settings import load_settings
    from alflow.store import connect
    from alflow.store.server import ensure_server, stop_server

    sizes = sorted(args.sizes)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="alflow-bench-store-"))
    workdir.mkdir(parents=True, exist_ok=True)
    store_dir = workdir / "store"
    partial = workdir / "store-benchmark.partial.json"
    if store_dir.exists():
        stop_server(store_dir)
        shutil.rmtree(store_dir)
    result: dict[str, Any] = {"benchmark": "store", "sizes": {}, "campaign": CAMPAIGN}
    SERVED["program"] = args.server_program or load_settings().local_server
    result["server_program"] = SERVED["program"]
    server = ensure_server(store_dir, program=SERVED["program"], pin=True)
    SERVED["store_dir"] = store_dir
    result["server_restarts"] = SERVED["restarts"]
    client: Any = pymongo.MongoClient(server.uri)
    try:
        store = Store(client[DB_NAME])
        store.ensure_indexes()
        register_campaign(store, CAMPAIGN)
        factory = DocFactory()
        have = 0
        mongomock_done = False
        for n in sizes:
            label = size_label(n)
            build_s = grow(store, factory, have, n, batch=args.batch)
            built = n - have
            have = n
            row: dict[str, Any] = {
                "n_structures": store.structures.count_documents({"campaign": CAMPAIGN}),
                "n_labels": store.labels.estimated_document_count(),
                "build_s": round(build_s, 1),
                "build_docs_per_s": round(built / build_s, 0) if build_s else None,
            }
            stats = client[DB_NAME].command("dbStats")
            row["data_MB"] = round(float(stats.get("dataSize", 0)) / 1e6, 1)
            row["storage_MB"] = round(_du(store_dir / "db") / 1e6, 1)
            print(
                f"[{label}] {row['n_structures']} structures, {row['n_labels']} labels, "
                f"built {built} in {build_s:.1f} s; data {row['data_MB']} MB, "
                f"on disk {row['storage_MB']} MB"
            )
            probe = point_query(store.structures.find_one({}, {"key": 1})["key"])
            figures, (server, client) = restart(store_dir, client, probe)
            store = Store(client[DB_NAME])
            row["open"] = figures
            print(
                f"  restart: stop {figures['stop_s']} s, start to ping "
                f"{figures['start_to_ping_s']} s, to first query {figures['start_to_first_query_s']} s"
            )
            row["walker"] = walker_saves(store, CAMPAIGN, args.walkers, args.frames)
            w = row["walker"]
            print(
                f"  walker save ({w['frames_per_walker']} frames): add_structures "
                f"{w['add_structures_s_per_walker']} s ({w['frames_per_s']} frames/s), "
                f"delete_unlabeled {w['delete_unlabeled_s_per_walker']} s"
            )
            db = open_query_database(server.uri, DB_NAME)
            row["queries"] = measure_queries(db, CAMPAIGN, n, args.repeats)
            db.close()
            for group in ("find", "other"):
                for name, f in row["queries"][group].items():
                    print(f"  {name:<52} {f['s']:8.4f} s {f['rows']:8d} rows")
            if not (args.no_cli or args.quick):
                row["cli_s"] = measure_cli(server.uri, DB_NAME, CAMPAIGN)
                for name, seconds in row["cli_s"].items():
                    print(f"  {name:<52} {seconds:8.3f} s (whole command)")
            row["ops"] = measure_ops(store, CAMPAIGN, args.repeats)
            for name, seconds in row["ops"].items():
                print(f"  {name:<52} {seconds:8.4f} s")
            row["plans"] = query_plans(store, CAMPAIGN)
            for name, plan in row["plans"].items():
                print(f"  explain find {name + ' (limit 50)':<39} {json.dumps(plan)}")
            if not args.quick:
                row["loop"] = loop_queries(store, CAMPAIGN, n, args.repeats)
                for step in ("select", "collect", "alflow status"):
                    for name, seconds in row["loop"][step]["queries"].items():
                        print(f"  {step + ': ' + name:<52} {seconds:8.4f} s")
                result[f"select_store_s_{label}"] = row["loop"]["select"]["total_s"]
                result[f"collect_store_s_{label}"] = row["loop"]["collect"]["total_s"]
            result["sizes"][label] = row
            finds = row["queries"]["find"]
            result[f"open_s_{label}"] = figures["start_to_first_query_s"]
            result[f"find_s_{label}"] = max(f["s"] for f in finds.values())
            result[f"stats_s_{label}"] = row["queries"]["other"]["stats --campaign"]["s"]
            result[f"walker_frames_per_s_{label}"] = w["frames_per_s"]
            result[f"find_one_and_update_s_{label}"] = row["ops"][
                "find_one_and_update (campaign, key)"
            ]
            result[f"count_s_{label}"] = row["ops"]["count_documents (campaign, status)"]
            partial.write_text(json.dumps(result, default=str))  # a crash keeps what was measured
            if not mongomock_done and n <= 10_000 and not args.no_mongomock:
                mongomock_done = True
                result["mongomock"] = _old_store(
                    store, workdir, n, args.repeats, label, result, args.quick
                )
        # the engine overhead per Firework (FireWorks + store), on the same server
        connection = connect(server.uri)
        print(f"engine overhead: {args.fireworks} trivial Fireworks per LaunchPad size")
        engine = engine_overhead(
            connection, workdir / "scratch", args.fireworks, args.launchpad_sizes, DB_NAME
        )
        connection.client.close()
        for row in engine.values():
            print(
                f"  LaunchPad with {row['launchpad_fireworks_before']:>6} Fireworks: "
                f"FireWorks only {row['fireworks_only_s_per_fw']:.3f} s/FW, alflow Firework "
                f"{row['alflow_firework_s_per_fw']:.3f} s/FW; runner poll "
                f"{row['runner_poll_s']:.4f} s, findAndModify {row['fireworks_find_one_and_update_fw_id_s']:.4f} s "
                f"vs find {row['fireworks_find_one_fw_id_s']:.4f} s"
            )
        result["engine"] = {"launchpads": engine}
    finally:
        client.close()
        stop_server(store_dir)
    if args.full or args.quickstart:
        print("quickstart campaign (alflow run workflows/quickstart-emt.yaml) ...")
        quick = quickstart_iteration(workdir)
        result["engine"]["quickstart"] = quick
        print(f"  {json.dumps(quick)}")
        iteration_wall_s = quick.get("iteration_wall_s", args.iteration_wall_s)
        per_iteration = quick.get("fireworks_per_iteration", args.fireworks_per_iteration)
        source = "measured (quickstart run)" if "iteration_wall_s" in quick else "default"
    else:
        iteration_wall_s, per_iteration = args.iteration_wall_s, args.fireworks_per_iteration
        source = "--iteration-wall-s"
    first = engine[str(args.launchpad_sizes[0])]
    per_fw = first["alflow_firework_s_per_fw"]
    result["engine"].update(
        iteration_wall_s=iteration_wall_s,
        fireworks_per_iteration=per_iteration,
        iteration_wall_source=source,
    )
    result["engine_s_per_firework"] = per_fw
    result["engine_overhead_fraction"] = round(per_iteration * per_fw / iteration_wall_s, 4)
    for size, row in engine.items():
        if int(size) > 0:
            fraction = per_iteration * row["alflow_firework_s_per_fw"] / iteration_wall_s
            result[f"engine_overhead_fraction_lp{size_label(int(size))}"] = round(fraction, 4)
    print(
        f"engine overhead: {per_iteration} Fireworks x {per_fw:.3f} s / {iteration_wall_s} s "
        f"iteration ({source}) = {100 * result['engine_overhead_fraction']:.2f} % (target <= 2 %)"
    )
    for size in engine:
        if int(size) > 0:
            print(
                f"  with {size} Fireworks in the LaunchPad: "
                f"{100 * result[f'engine_overhead_fraction_lp{size_label(int(size))}']:.1f} %"
            )
    if "mongomock" in result and "save_s_per_firework" in result["mongomock"]:
        save_s = result["mongomock"]["save_s_per_firework"]
        label = size_label(result["mongomock"]["n_structures"])
        fraction = per_iteration * save_s / iteration_wall_s
        result[f"mongomock_engine_overhead_fraction_{label}"] = round(fraction, 4)
        print(
            f"  old store at {label}: the whole-file save alone, {save_s} s after each Firework = "
            f"{100 * fraction:.1f} % of the iteration"
        )
    # the loop's own store queries per iteration, if the quickstart iteration ran on a store
    # of each size (2 walkers of 20 frames, one select, one collect)
    walkers, frames = 2, 20
    for label, row in result["sizes"].items():
        if "loop" not in row:
            continue
        w = row["walker"]
        seconds = row["loop"]["select"]["total_s"] + row["loop"]["collect"]["total_s"]
        seconds += walkers * (w["delete_unlabeled_s_per_walker"] + frames / w["frames_per_s"])
        row["loop"]["per_iteration_s"] = round(seconds, 2)
        result[f"loop_store_s_per_iteration_{label}"] = round(seconds, 2)
        result[f"loop_store_fraction_{label}"] = round(seconds / iteration_wall_s, 4)
        print(
            f"  [{label}] the loop's store queries per iteration (select, collect, "
            f"{walkers} walker saves): {seconds:.2f} s = {100 * seconds / iteration_wall_s:.1f} % "
            "of the iteration"
        )
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _old_store(
    store: Store,
    workdir: Path,
    n: int,
    repeats: int,
    label: str,
    result: dict[str, Any],
    quick: bool,
) -> dict[str, Any]:
    try:
        import mongomock  # noqa: F401
    except ImportError:
        print("  (mongomock not installed: the old store's figures are skipped)")
        return {"skipped": "mongomock not installed"}
    old = mongomock_figures(read_back(store), workdir, CAMPAIGN, n, repeats, energy=not quick)
    print(
        f"  old store (mongomock, {old['file_MB']} MB file): open {old['open_s']} s, "
        f"save after each Firework {old['save_s_per_firework']} s, walker save "
        f"{old['walker']['frames_per_s']} frames/s"
    )
    for name, f in old["queries"]["find"].items():
        if f["s"] is not None:
            print(f"    mongomock {name:<52} {f['s']:8.4f} s {f['rows']:8d} rows")
    result[f"mongomock_open_s_{label}"] = old["open_s"]
    result[f"mongomock_find_s_{label}"] = max(
        f["s"] for f in old["queries"]["find"].values() if f["s"] is not None
    )
    result[f"mongomock_stats_s_{label}"] = old["queries"]["other"]["stats --campaign"]["s"]
    result[f"mongomock_save_s_per_firework_{label}"] = old["save_s_per_firework"]
    result[f"mongomock_walker_frames_per_s_{label}"] = old["walker"]["frames_per_s"]
    return old


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    """Parse arguments, run, print the figures (last line: one JSON object)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="10^4 structures only (~1 min)")
    mode.add_argument(
        "--full", action="store_true", help="10^4, 10^5, 10^6 and a quickstart campaign run"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="structure counts (overrides modes)")
    parser.add_argument(
        "--quickstart",
        action="store_true",
        help="run the quickstart campaign for the iteration wall time (always with --full)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats per query (median)")
    parser.add_argument("--walkers", type=int, default=4, help="walker saves per size")
    parser.add_argument("--frames", type=int, default=50, help="frames per walker save")
    parser.add_argument("--fireworks", type=int, help="trivial Fireworks per LaunchPad size")
    parser.add_argument(
        "--launchpad-sizes", type=int, nargs="+", help="Fireworks already in the LaunchPad"
    )
    parser.add_argument(
        "--iteration-wall-s",
        type=float,
        default=DEFAULT_ITERATION_WALL_S,
        help="wall time of a quickstart iteration (measured with --full)",
    )
    parser.add_argument(
        "--fireworks-per-iteration", type=float, default=DEFAULT_FIREWORKS_PER_ITERATION
    )
    parser.add_argument(
        "--server-program",
        help="the local server: secantusd-py, mongod or a path (default: ALFLOW_LOCAL_SERVER)",
    )
    parser.add_argument("--batch", type=int, default=2000, help="insert_many batch size")
    parser.add_argument("--no-mongomock", action="store_true", help="skip the old store")
    parser.add_argument("--no-cli", action="store_true", help="skip the alflow db subprocesses")
    parser.add_argument("--workdir", help="keep the store and files here (default: a temp dir)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines as they come, also to a file
    if args.sizes is None:
        args.sizes = (
            [10_000]
            if args.quick
            else [10_000, 100_000, 1_000_000]
            if args.full
            else [10_000, 100_000]
        )
    if args.quick:
        args.repeats = min(args.repeats, 1)
        args.walkers = min(args.walkers, 2)
    if args.fireworks is None:
        args.fireworks = 5 if args.quick or min(args.sizes) < 10_000 else 20
    if args.launchpad_sizes is None:
        args.launchpad_sizes = [0] if args.quick or min(args.sizes) < 10_000 else [0, 1000, 10_000]
    result = run(args)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
