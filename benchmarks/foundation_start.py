"""Labels to target: a committee member fine-tuned from a foundation model against one from scratch.

EMT is the oracle. A Cu "donor" model is trained on 300 K bulk frames of
8-atom fcc Cu (unstrained) and written as an alflow export would write it
(``member00.model`` with the ZBL prior, ``train.xyz``, ``model_card.json``).
The target task is Cu at other conditions: Langevin MD at 900 and 1200 K in
cells strained by -4 % and +4 %, with a held-out test set from independent
runs at the same conditions. For each number N of random target labels
(nested draws: the first N of one seeded permutation of the target pool),
one member is trained with :func:`alflow.committee.train.train_member`
from scratch and one with ``foundation=`` the donor file (multihead replay
of the donor's train.xyz, :mod:`alflow.committee.foundation`), same seed,
same epochs; each is scored by its force RMSE on the test set. The donor
itself is the foundation curve's point at 0 labels.

``labels_to_target`` is the number of labels after which the seed-averaged
RMSE first reaches the target (``labels_to_target_interpolated``: where the
curve crosses it, log-linear between points; helpers of
``benchmarks/data_efficiency.py``). The default target is the RMSE the
from-scratch member reaches with the most labels.

Usage::

    python benchmarks/foundation_start.py --quick      # ~2 min on 2 cores
    python benchmarks/foundation_start.py              # 2, 4, 8, 16, 32 labels, 3 seeds

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_CONDITIONS = ((900.0, -0.04), (900.0, 0.04), (1200.0, -0.04), (1200.0, 0.04))
METHODS = ("scratch", "foundation")


@dataclass(frozen=True)
class Setup:
    """Sizes of one run."""

    labels: tuple[int, ...]
    seeds: int
    donor_frames: int
    donor_epochs: int
    epochs: int
    pool_per_condition: int
    test_per_condition: int


QUICK = Setup((4, 16), 1, 16, 30, 20, 8, 4)
FULL = Setup((2, 4, 8, 16, 32), 3, 48, 80, 60, 12, 8)


def _data_efficiency() -> Any:
    """benchmarks/data_efficiency.py as a module (its MD frames and labels-to-target helpers)."""
    path = REPO / "benchmarks" / "data_efficiency.py"
    spec = importlib.util.spec_from_file_location("data_efficiency", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def labeled(frames: list[Any]) -> list[Any]:
    """data_efficiency's MD frames as labeled frames (SinglePointCalculator with EMT labels)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = SinglePointCalculator(
            atoms, energy=frame.info["energy_eV"], forces=frame.arrays["forces_eV_A"]
        )
        out.append(atoms)
    return out


def build_data(de: Any, setup: Setup) -> tuple[list[Any], list[Any], list[Any]]:
    """Donor frames (300 K, unstrained), target pool and held-out test set (other conditions)."""
    donor = de.md_frames(300.0, 0.0, setup.donor_frames, seed=101, stride=10)
    pool, test = [], []
    for i, (temperature_K, strain) in enumerate(TARGET_CONDITIONS):
        pool += de.md_frames(temperature_K, strain, setup.pool_per_condition, seed=200 + i)
        test += de.md_frames(temperature_K, strain, setup.test_per_condition, seed=300 + i)
    return labeled(donor), labeled(pool), test


def isolated_energy_eV() -> float:
    """EMT energy of an isolated Cu atom (the E0 every model here is given)."""
    from ase import Atoms
    from ase.calculators.emt import EMT

    atom = Atoms("Cu", cell=[12.0] * 3, pbc=False)
    atom.calc = EMT()
    return float(atom.get_potential_energy())


def write_export(model_path: Path, frames: list[Any], e0s_eV: dict[str, float], out: Path) -> Path:
    """The donor as ``alflow model export`` lays it out (model, train.xyz, model_card.json)."""
    from alflow.potential.export import CARD_JSON, TRAIN_XYZ, write_training_set
    from alflow.workcache import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    model = out / "member00.model"
    shutil.copyfile(model_path, model)
    for i, atoms in enumerate(frames):
        atoms.info.update(key=f"donor-{i}", iteration=0)
    data = write_training_set(out / TRAIN_XYZ, frames, e0s_eV, True)
    files = {p.name: {"sha256": sha256_file(p)} for p in (model, out / TRAIN_XYZ)}
    card = {"campaign": "cu-donor-300K", "training_data": data, "files": files}
    (out / CARD_JSON).write_text(json.dumps(card, indent=2))
    return model


def test_force_rmse(model_path: Path, test: list[Any], de: Any) -> float:
    """Force RMSE (eV/Å) of one model on the test frames."""
    from alflow.committee import load_committee

    calc = load_committee([model_path, model_path], threads=1)
    predicted = []
    for frame in test:
        atoms = frame.copy()
        atoms.calc = calc
        predicted.append(atoms.get_forces().copy())
    return de.force_rmse(predicted, test)


def _train(job: dict[str, Any]) -> dict[str, Any]:
    from alflow.committee.train import train_member

    started = time.monotonic()
    member = train_member(
        job["frames"],
        model=job["model"],
        training=job["training"],
        seed=job["seed"],
        workdir=job["workdir"],
        e0s_eV=job["e0s_eV"],
        foundation=job.get("foundation"),
        threads=1,
        name="m",
    )
    return {**job, "model_path": member.model_path, "train_s": time.monotonic() - started}


def run(setup: Setup, root: Path, workers: int) -> dict[str, Any]:
    """Every training and evaluation of one benchmark run; the raw points."""
    from alflow.config import MaceModelConfig, TrainingConfig

    de = _data_efficiency()
    donor_frames, pool, test = build_data(de, setup)
    e0s_eV = {"Cu": isolated_energy_eV()}
    model = MaceModelConfig(channels=16, max_L=0, r_max_A=4.5, num_interactions=2, correlation=2)
    # the ZBL prior is zero on every frame here: only the donor (an export carries it) has it
    training = TrainingConfig(
        epochs=setup.epochs, batch_size=4, valid_fraction=0.2, stress_weight=0.0,
        pair_repulsion=False,
    )  # fmt: skip
    donor_job = {
        "frames": donor_frames,
        "model": model,
        "training": training.model_copy(
            update={"epochs": setup.donor_epochs, "pair_repulsion": True}
        ),
        "seed": 0,
        "workdir": root / "donor",
        "e0s_eV": e0s_eV,
    }
    donor = _train(donor_job)
    donor_file = write_export(donor["model_path"], donor_frames, e0s_eV, root / "export")
    jobs = []
    for seed in range(setup.seeds):
        order = np.random.default_rng(1000 + seed).permutation(len(pool))
        for n in setup.labels:
            for method in METHODS:
                jobs.append(
                    {
                        "method": method,
                        "labels": n,
                        "seed": seed,
                        "frames": [pool[i] for i in order[:n]],
                        "model": model,
                        "training": training,
                        "workdir": root / f"{method}-n{n}-s{seed}",
                        "e0s_eV": e0s_eV,
                        "foundation": donor_file if method == "foundation" else None,
                    }
                )
    with ThreadPoolExecutor(workers) as executor:
        done = list(executor.map(_train, jobs))
    points = [
        {
            "method": d["method"],
            "labels": d["labels"],
            "seed": d["seed"],
            "force_rmse_eV_A": test_force_rmse(d["model_path"], test, de),
            "train_s": round(d["train_s"], 1),
        }
        for d in done
    ]
    donor_rmse = test_force_rmse(donor["model_path"], test, de)
    return {"points": points, "donor_test_force_rmse_eV_A": donor_rmse, "de": de}


def summarize(raw: dict[str, Any], setup: Setup, target: float | None) -> dict[str, Any]:
    """Seed-averaged curves, the target and the labels each start needs to reach it."""
    de, points = raw["de"], raw["points"]
    curves: dict[str, list[dict[str, Any]]] = {}
    for method in METHODS:
        curve = []
        if method == "foundation":
            donor = raw["donor_test_force_rmse_eV_A"]
            curve.append({"labels": 0, "force_rmse_eV_A": donor, "per_seed": [donor]})
        for n in setup.labels:
            values = [
                p["force_rmse_eV_A"] for p in points if p["method"] == method and p["labels"] == n
            ]
            curve.append(
                {"labels": n, "force_rmse_eV_A": float(np.mean(values)), "per_seed": values}
            )
        curves[method] = curve
    if target is None:
        target = curves["scratch"][-1]["force_rmse_eV_A"]
    return {
        "target_force_rmse_eV_A": target,
        "labels_to_target": {m: de.labels_to_target(curves[m], target) for m in METHODS},
        "labels_to_target_interpolated": {
            m: de.labels_to_target_interpolated(curves[m], target) for m in METHODS
        },
        "curves": curves,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print a table and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 label counts, 1 seed (~2 min)")
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--target", type=float, help="target force RMSE (eV/Å)")
    parser.add_argument("--workers", type=int, default=2, help="trainings side by side")
    parser.add_argument("--keep", type=Path, help="keep the work files here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    setup = QUICK if args.quick else FULL
    if args.seeds:
        setup = Setup(**{**setup.__dict__, "seeds": args.seeds})
    started = time.monotonic()
    root = args.keep or Path(tempfile.mkdtemp(prefix="alflow-foundation-"))
    try:
        raw = run(setup, root, args.workers)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "foundation_start",
        "quick": args.quick,
        "labels": list(setup.labels),
        "seeds": setup.seeds,
        "epochs": setup.epochs,
        "target_conditions": [f"{t:g} K, {e:+.0%}" for t, e in TARGET_CONDITIONS],
        "donor": f"{setup.donor_frames} frames at 300 K, 0 % strain, {setup.donor_epochs} epochs",
        "donor_test_force_rmse_eV_A": raw["donor_test_force_rmse_eV_A"],
        **summarize(raw, setup, args.target),
        "points": raw["points"],
        "wall_s": round(time.monotonic() - started, 1),
    }
    for method in METHODS:
        row = "  ".join(
            f"{p['labels']}: {p['force_rmse_eV_A']:.4f}" for p in result["curves"][method]
        )
        print(f"{method:>10}  {row}", file=sys.stderr)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
