"""Benchmark: filtered queries on an embedded store of 100,000 structures.

Builds an embedded store file with synthetic documents shaped exactly like
the loop's (``Store.add_structures`` + explore/select/label fields: atoms,
pymatgen dict, origin, uncertainty, committee forces; labels with energy,
forces, stress, wall time and cores), opens it the way ``alflow db`` does
(read-only snapshot) and times typical ``alflow db find`` queries.

Usage::

    python benchmarks/query.py            # 100,000 structures
    python benchmarks/query.py --quick    # 20,000 structures (well under a minute)

The last line printed is one JSON object with ``n_structures`` and
``query_seconds`` (the slowest of the typical queries, median of repeats).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase.build import bulk
from bson import ObjectId

from alflow.query import StructureQuery, open_database
from alflow.store.embedded import EmbeddedServer
from alflow.store.store import Store, utcnow
from alflow.structures import atoms_to_doc, pymatgen_dict, structure_key

# (status, fraction) of explored frames, as the select and label steps leave them
_STATUS_MIX = (
    ("accurate", 0.60),
    ("candidate", 0.16),
    ("unphysical", 0.05),
    ("rejected", 0.03),
    ("labeled", 0.13),
    ("failed", 0.01),
    ("selected", 0.02),
)


def _templates() -> list[Any]:
    """Base cells of 4, 8, 16 and 32 atoms, pure Cu and Al-Cu."""
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


def _structure_dict(template: dict[str, Any], atoms: Any) -> dict[str, Any]:
    """The template's pymatgen dict with this frame's coordinates (same shape, fast)."""
    doc = copy.deepcopy(template)
    frac = atoms.get_scaled_positions(wrap=False)
    for site, abc, xyz in zip(doc["sites"], frac.tolist(), atoms.positions.tolist(), strict=True):
        site["abc"], site["xyz"] = abc, xyz
    return doc


def build_store(path: Path, n_structures: int, seed: int = 0) -> dict[str, int]:
    """Write an embedded store with ``n_structures`` loop-shaped structures and their labels."""
    rng = np.random.default_rng(seed)
    server = EmbeddedServer(path, writable=True)
    store = Store(server.client["alflow"])
    templates = _templates()
    pmg = [pymatgen_dict(t) for t in templates]
    campaigns = ("cu-emt", "alcu-gpaw", "alcu-hot")
    statuses = [s for s, _ in _STATUS_MIX]
    weights = np.array([w for _, w in _STATUS_MIX])
    now = utcnow()
    structures: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    n_labels = 0
    for i in range(n_structures):
        campaign = campaigns[i % len(campaigns)]
        index = int(rng.integers(len(templates)))
        atoms = templates[index].copy()
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        n = len(atoms)
        iteration = int(rng.integers(0, 12))
        seed_frame = i % 50 == 0
        status = "seed" if seed_frame else statuses[int(rng.choice(len(statuses), p=weights))]
        key = structure_key(atoms)
        dev = float(rng.lognormal(np.log(0.12), 0.8))
        doc: dict[str, Any] = {
            "_id": ObjectId(),
            "campaign": campaign,
            "key": key,
            "iteration": 0 if seed_frame else iteration,
            "formula": atoms.get_chemical_formula(mode="hill"),
            "reduced_formula": atoms.get_chemical_formula(mode="hill", empirical=True),
            "elements": sorted(set(atoms.get_chemical_symbols())),
            "n_atoms": n,
            "atoms": atoms_to_doc(atoms),
            "structure": _structure_dict(pmg[index], atoms),
            "origin": {"kind": "seed"}
            if seed_frame
            else {
                "kind": "walker",
                "iteration": iteration,
                "walker": int(rng.integers(0, 8)),
                "step": int(rng.integers(0, 2000)),
                "time_fs": float(rng.uniform(0, 4000)),
                "temperature_K": float(rng.choice([300.0, 600.0, 900.0, 1200.0])),
                "pressure_GPa": None,
                "ensemble": "nvt",
                "instantaneous_temperature_K": float(rng.uniform(200, 1400)),
                "start": "seed-0",
                "model_ids": [f"{campaign}/it{iteration:03d}/m{m:02d}" for m in range(4)],
            },
            "status": status,
            "reason": "min distance 0.61 Å < 0.75 Å" if status == "rejected" else None,
            "created": now,
            "updated": now,
        }
        if not seed_frame:
            forces = rng.normal(0.0, 0.6, (n, 3))
            doc["uncertainty"] = {"max_force_dev_eV_A": dev, "energy_std_eV": dev * 0.05}
            doc["committee"] = {
                "energy_eV": float(-3.7 * n + rng.normal(0, 0.2)),
                "forces_eV_A": forces.tolist(),
                "model_ids": doc["origin"]["model_ids"],
            }
        if status in ("seed", "labeled", "failed"):
            label_id = ObjectId()
            label: dict[str, Any] = {
                "_id": label_id,
                "structure_key": key,
                "parameters_hash": "b1946ac92492d2347c6235b4d2611184",
                "code": "gpaw",
                "parameters": {"xc": "PBE", "mode": {"name": "pw", "ecut": 300.0}, "kpts": 3},
                "campaign": campaign,
                "iteration": doc["iteration"],
                "workdir": f"/scratch/{campaign}/label-{i}",
                "wall_s": float(rng.uniform(20, 400)),
                "cores": int(rng.choice([2, 4, 8])),
                "host": f"cn{int(rng.integers(1, 64)):03d}",
                "created": now,
            }
            if status == "failed":
                label.update(ok=False, error="KohnShamConvergenceError", attempts=[])
            else:
                label.update(
                    ok=True,
                    energy_eV=float(-3.7 * n + rng.normal(0, 0.3)),
                    forces_eV_A=rng.normal(0.0, 0.5, (n, 3)).tolist(),
                    stress_eV_A3=rng.normal(0.0, 0.01, 6).tolist(),
                    magmoms=None,
                    converged=True,
                )
                doc["label_id"] = label_id
            labels.append(label)
            n_labels += 1
        structures.append(doc)
        if len(structures) >= 5000:
            store.structures.insert_many(structures)
            structures = []
    if structures:
        store.structures.insert_many(structures)
    if labels:
        store.labels.insert_many(labels)
    for name in campaigns:
        store.campaigns.insert_one(
            {"name": name, "config": {}, "config_hash": "x", "status": "running",
             "reason": None, "created": now, "updated": now}
        )  # fmt: skip
    # Indexes after the documents: mongomock checks a unique index on every
    # insert by scanning the collection (quadratic); afterwards it is instant.
    store.ensure_indexes()
    server.save()
    server.close()
    return {"n_structures": n_structures, "n_labels": n_labels}


def _time(function: Any, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


QUERIES: dict[str, StructureQuery] = {
    "campaign+iteration+status (all)": StructureQuery(
        campaign="alcu-gpaw", iteration=5, status="candidate"
    ),
    "status=labeled, limit 100": StructureQuery(status="labeled", limit=100),
    "formula AlCu3 + campaign, limit 100": StructureQuery(
        campaign="alcu-hot", formula="AlCu3", limit=100
    ),
    "elements Al,Cu + uncertainty 0.3-0.5 eV/Å, limit 100": StructureQuery(
        elements="Al,Cu", min_uncertainty_eV_A=0.3, max_uncertainty_eV_A=0.5, limit=100
    ),
    "uncertainty >= 0.8 eV/Å (all)": StructureQuery(min_uncertainty_eV_A=0.8),
    "energy -3.72:-3.68 eV/atom + campaign, limit 100": StructureQuery(
        campaign="cu-emt", min_energy_eV_per_atom=-3.72, max_energy_eV_per_atom=-3.68, limit=100
    ),
}


def run(n_structures: int, repeats: int, compare: bool) -> dict[str, Any]:
    """Build the store, open it as ``alflow db`` does and time the queries."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.bson"
        start = time.perf_counter()
        built = build_store(path, n_structures)
        build_s = time.perf_counter() - start
        gc.collect()
        size_MB = path.stat().st_size / 1e6
        start = time.perf_counter()
        db = open_database(str(path))
        open_s = time.perf_counter() - start
        results: dict[str, Any] = {}
        for name, query in QUERIES.items():
            seconds, rows = _time(lambda q=query: list(db.find(q)), repeats)
            results[name] = {"seconds": round(seconds, 4), "matches": len(rows)}
        seconds, stats = _time(lambda: db.stats("alcu-gpaw"), repeats)
        results["stats --campaign"] = {
            "seconds": round(seconds, 4),
            "matches": stats["n_structures"],
        }
        seconds, frames = _time(
            lambda: list(db.atoms(StructureQuery(status="labeled", limit=1000))), repeats
        )
        atoms_1000_s = seconds
        comparison: dict[str, Any] = {}
        if compare:  # the same queries through mongomock's own scan (engine="mongo")
            plain = open_database(str(path), engine="mongo")
            for name, query in QUERIES.items():
                if query.has_energy_range:  # mongomock's $lookup is quadratic: minutes
                    continue
                seconds, rows = _time(lambda q=query: list(plain.find(q)), 1)
                comparison[name] = round(seconds, 4)
        query_seconds = max(r["seconds"] for r in results.values())
        return {
            "benchmark": "query",
            "engine": db.engine.name,
            **built,
            "store_MB": round(size_MB, 1),
            "build_seconds": round(build_s, 2),
            "open_seconds": round(open_s, 2),
            "queries": results,
            "atoms_1000_labeled_seconds": round(atoms_1000_s, 4),
            "mongomock_scan_seconds": comparison,
            "query_seconds": round(query_seconds, 4),
            "frames_checked": len(frames),
        }


def main() -> None:
    """Parse arguments, run, print the figures (last line: one JSON object)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 structures")
    parser.add_argument("--n", type=int, help="number of structures (overrides --quick)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per query (median)")
    parser.add_argument(
        "--no-compare", action="store_true", help="skip timing mongomock's own query scan"
    )
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 100_000)
    result = run(n, args.repeats, compare=not args.no_compare)
    for name, figures in result["queries"].items():
        plain = result["mongomock_scan_seconds"].get(name)
        extra = f"   (mongomock scan {plain:.3f} s)" if plain is not None else ""
        print(f"{name:<55} {figures['seconds']:8.4f} s  {figures['matches']:6d} rows{extra}")
    print(
        f"store: {result['n_structures']} structures, {result['n_labels']} labels, "
        f"{result['store_MB']} MB; built in {result['build_seconds']} s, "
        f"opened (load + index) in {result['open_seconds']} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
