"""Data efficiency of alflow's selection against random and DP-GEN-style sampling.

EMT is the oracle (fast and exact). One candidate pool of EMT molecular
dynamics frames (8-atom Cu cells at several temperatures and strains) and one
held-out test set of frames from independent MD runs are shared by every
method. Each method starts from the same few random pool frames, then for
``rounds`` rounds: trains a committee of tiny MACE models (warm-started from
its previous round, as a campaign does), evaluates it on the pool and the
test set, and labels ``batch`` more pool frames:

- ``random``: uniformly at random from the unlabeled pool;
- ``dpgen``: at random among frames inside a fixed trust window on the max
  force deviation (DP-GEN), topped up at random when the window holds fewer;
- ``alflow``: :func:`alflow.calibration.calibrated_thresholds` (fit on the
  frames labeled so far) + :func:`alflow.selection.select_candidates` with
  audit frames and FPS on mean MACE node features, topped up with the most
  uncertain frames below the window when the window holds fewer.

Every method labels exactly the same number of frames per round. The curve is
the force RMSE of the committee mean on the test set against the number of
labels, averaged over seeds. ``labels_to_target`` is the number of labels
after which the seed-averaged RMSE first reaches the target; by default the
target is the RMSE random sampling reaches with all its labels.

Usage::

    python benchmarks/data_efficiency.py --quick        # ~1-2 min
    python benchmarks/data_efficiency.py                # full (3 seeds)
    python benchmarks/data_efficiency.py --plot docs/figures/data_efficiency.png

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("random", "dpgen", "alflow")


@dataclass(frozen=True)
class Setup:
    """Sizes of one benchmark run."""

    seeds: int
    rounds: int
    batch: int
    initial: int
    members: int
    frames_per_run: int
    test_per_run: int
    first_epochs: int
    epochs: int
    temperatures_K: tuple[float, ...] = (300.0, 900.0, 1500.0)
    strains: tuple[float, ...] = (-0.03, 0.0, 0.04)


QUICK = Setup(2, 3, 6, 6, 2, 12, 4, 20, 8)
FULL = Setup(3, 5, 6, 6, 3, 24, 6, 40, 15)


# --------------------------------------------------------------------------- data


def md_frames(temperature_K: float, strain: float, n: int, seed: int) -> list[Any]:
    """EMT Langevin MD frames of 8-atom Cu (every 10 steps of 2 fs after 40 steps)."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = bulk("Cu", "fcc", a=3.61).repeat(2)
    atoms.set_cell(atoms.cell * (1.0 + strain), scale_atoms=True)
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature_K, friction=0.02, rng=rng)
    dyn.run(40)
    frames = []
    for _ in range(n):
        dyn.run(10)
        frame = atoms.copy()
        frame.calc = None
        frame.info["energy_eV"] = float(atoms.get_potential_energy())
        frame.arrays["forces_eV_A"] = atoms.get_forces().copy()
        frames.append(frame)
    return frames


def build_data(setup: Setup) -> tuple[list[Any], list[Any]]:
    """The shared candidate pool and the held-out test set."""
    pool, test = [], []
    run = 0
    for temperature in setup.temperatures_K:
        for strain in setup.strains:
            pool += md_frames(temperature, strain, setup.frames_per_run, seed=1000 + run)
            test += md_frames(temperature, strain, setup.test_per_run, seed=5000 + run)
            run += 1
    return pool, test


# --------------------------------------------------------------------------- model


class Committee:
    """Tiny MACE models trained in this process (the benchmark owns the process)."""

    def __init__(self, members: int, seed: int, e0_eV: float) -> None:
        import torch
        from e3nn import o3
        from mace import modules

        torch.set_default_dtype(torch.float32)
        self.models = []
        for m in range(members):
            torch.manual_seed(seed * 100 + m)
            block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
            self.models.append(
                modules.ScaleShiftMACE(
                    r_max=4.5,
                    num_bessel=8,
                    num_polynomial_cutoff=5,
                    max_ell=1,
                    interaction_cls=block,
                    interaction_cls_first=block,
                    num_interactions=2,
                    num_elements=1,
                    hidden_irreps=o3.Irreps("16x0e"),
                    MLP_irreps=o3.Irreps("16x0e"),
                    atomic_energies=np.array([e0_eV]),
                    avg_num_neighbors=40.0,
                    atomic_numbers=[29],
                    correlation=2,
                    gate=torch.nn.functional.silu,
                    atomic_inter_scale=1.0,
                    atomic_inter_shift=0.0,
                )
            )
        self.optimizers = [torch.optim.Adam(m.parameters(), lr=0.01) for m in self.models]

    def clone(self) -> Committee:
        """An independent copy (models and optimiser states)."""
        import copy

        return copy.deepcopy(self)

    def train(self, data: list[Any], epochs: int, seed: int) -> None:
        """Force-weighted training of every member (mini-batches of 6, shuffled per member)."""
        import torch
        from mace.tools import torch_geometric

        for m, (model, optimizer) in enumerate(zip(self.models, self.optimizers, strict=True)):
            generator = torch.Generator().manual_seed(seed * 1000 + m)
            loader = torch_geometric.dataloader.DataLoader(
                data, batch_size=6, shuffle=True, generator=generator
            )
            model.train()
            for _ in range(epochs):
                for batch in loader:
                    optimizer.zero_grad()
                    out = model(batch.to_dict(), training=True, compute_force=True)
                    n_atoms = (batch.ptr[1:] - batch.ptr[:-1]).to(out["energy"].dtype)
                    loss = torch.mean((out["forces"] - batch.forces) ** 2) + 0.01 * torch.mean(
                        ((out["energy"] - batch.energy) / n_atoms) ** 2
                    )
                    loss.backward()
                    optimizer.step()

    def evaluate(self, data: list[Any]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """forces_comm (M, N, 3) per frame, committee-mean forces, mean node features (n, d)."""
        from mace.tools import torch_geometric

        loader = torch_geometric.dataloader.DataLoader(data, batch_size=32, shuffle=False)
        per_member, features = [], []
        for i, model in enumerate(self.models):
            model.eval()
            forces = []
            for batch in loader:
                out = model(batch.to_dict(), training=False, compute_force=True)
                forces.append(out["forces"].detach().numpy())
                if i == 0:
                    feats = out["node_feats"].detach()
                    ptr = batch.ptr.numpy()
                    f = feats.numpy()
                    features += [f[ptr[k] : ptr[k + 1]].mean(axis=0) for k in range(len(ptr) - 1)]
            per_member.append(np.concatenate(forces))
        stacked = np.stack(per_member)  # (M, total atoms, 3)
        sizes = [int(d.num_nodes) for d in data]
        bounds = np.cumsum([0, *sizes])
        comm = [stacked[:, bounds[k] : bounds[k + 1]] for k in range(len(data))]
        return comm, [c.mean(axis=0) for c in comm], np.stack(features)


def to_data(frames: list[Any]) -> list[Any]:
    """MACE AtomicData of labeled frames."""
    import mace.data
    import mace.tools

    z_table = mace.tools.AtomicNumberTable([29])
    keyspec = mace.data.KeySpecification(
        info_keys={"energy": "energy_eV"}, arrays_keys={"forces": "forces_eV_A"}
    )
    out = []
    for atoms in frames:
        config = mace.data.config_from_atoms(atoms, key_specification=keyspec)
        out.append(mace.data.AtomicData.from_config(config, z_table=z_table, cutoff=4.5))
    return out


# --------------------------------------------------------------------------- selection


def select(
    method: str,
    rng: np.random.Generator,
    remaining: np.ndarray,
    deviation: np.ndarray,
    descriptors: np.ndarray,
    labeled: list[int],
    history: dict[str, list[float]],
    pool: list[Any],
    batch: int,
    config: Any,
    round_index: int,
) -> tuple[list[int], dict[str, Any]]:
    """Pool indices to label next (exactly ``batch``) and what the method saw."""
    from alflow.calibration import calibrated_thresholds
    from alflow.selection import select_candidates

    if method == "random":
        return [int(i) for i in rng.choice(remaining, batch, replace=False)], {}
    lo, hi = config.fixed_window()
    if method == "dpgen":
        inside = remaining[(deviation[remaining] >= lo) & (deviation[remaining] < hi)]
        picked = list(rng.choice(inside, min(batch, len(inside)), replace=False))
        rest = np.setdiff1d(remaining, picked)
        picked += list(rng.choice(rest, batch - len(picked), replace=False))
        return [int(i) for i in picked], {"in_window": len(inside)}
    thresholds = calibrated_thresholds(history["score"], history["error"], config)
    keys = [f"frame-{i}" for i in remaining]
    result = select_candidates(
        [pool[i] for i in remaining],
        deviation[remaining],
        keys,
        selection=config,
        budget=batch,
        known_keys=[f"frame-{i}" for i in labeled],
        known_descriptors=descriptors[labeled],
        sanity_check=lambda _atoms: None,
        window=(thresholds.lo, thresholds.hi),
        descriptors=descriptors[remaining],
        audit_per_iteration=config.audit_per_iteration,
        seed=config.seed + round_index,
    )
    picked = [int(remaining[i]) for i in result.selected]
    if len(picked) < batch:  # top up with the most uncertain frames not yet picked
        order = remaining[np.argsort(-deviation[remaining])]
        picked += [int(i) for i in order if int(i) not in picked][: batch - len(picked)]
    return picked, {"thresholds": thresholds.as_doc(), "audit": len(result.audit)}


def run_method(
    method: str, seed: int, setup: Setup, pool: list[Any], test: list[Any], base: dict[str, Any]
) -> dict[str, Any]:
    """Learning curve of one method and seed, and its per-round calibration records."""
    from alflow.calibration import frame_force_error_eV_A, spearman
    from alflow.committee.uncertainty import max_force_deviation
    from alflow.config import SelectionConfig

    config = SelectionConfig(
        trust_lo_eV_A=0.05,
        trust_hi_eV_A=0.5,
        target_force_error_eV_A=base["target_error_eV_A"],
        calibration_min_points=8,
        audit_per_iteration=1,
        max_per_iteration=setup.batch,
    )
    rng = np.random.default_rng(seed * 7 + METHODS.index(method))
    committee = base["committee"].clone()
    labeled = list(base["labeled"])
    pool_data, test_data = base["pool_data"], base["test_data"]
    history: dict[str, list[float]] = {"score": [], "error": []}
    curve, records = [], []
    for round_index in range(setup.rounds + 1):
        if round_index:
            committee.train([pool_data[i] for i in labeled], setup.epochs, seed + round_index)
        _, test_mean, _ = committee.evaluate(test_data)
        rmse = float(
            np.sqrt(
                np.mean(
                    np.concatenate(
                        [
                            (p - t.arrays["forces_eV_A"]).ravel()
                            for p, t in zip(test_mean, test, strict=True)
                        ]
                    )
                    ** 2
                )
            )
        )
        curve.append({"labels": len(labeled), "force_rmse_eV_A": rmse})
        if round_index == setup.rounds:
            break
        comm, mean, descriptors = committee.evaluate(pool_data)
        deviation = np.array([max_force_deviation(c) for c in comm])
        remaining = np.setdiff1d(np.arange(len(pool)), labeled)
        picked, info = select(
            method,
            rng,
            remaining,
            deviation,
            descriptors,
            labeled,
            history,
            pool,
            setup.batch,
            config,
            round_index,
        )
        errors = [frame_force_error_eV_A(mean[i], pool[i].arrays["forces_eV_A"]) for i in picked]
        history["score"] += [float(deviation[i]) for i in picked]
        history["error"] += errors
        labeled += picked
        records.append(
            {
                "iteration": round_index,
                "selection": {"thresholds": info.get("thresholds")},
                "calibration_check": {
                    "scores": [float(deviation[i]) for i in picked],
                    "errors_eV_A": errors,
                    "spearman": spearman([deviation[i] for i in picked], errors),
                },
                "pool_spearman": spearman(
                    deviation,
                    [
                        frame_force_error_eV_A(m, p.arrays["forces_eV_A"])
                        for m, p in zip(mean, pool, strict=True)
                    ],
                ),
            }
        )
    return {"method": method, "seed": seed, "curve": curve, "records": records}


def labels_to_target(curve: list[dict[str, float]], target: float) -> int | None:
    """Labels at the first point of a curve at or below ``target`` (None: never)."""
    for point in curve:
        if point["force_rmse_eV_A"] <= target + 1e-12:
            return int(point["labels"])
    return None


def plot_curves(result: dict[str, Any], path: Path) -> None:
    """Seed-averaged RMSE vs labels per method (with min-max band) and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method in METHODS:
        labels = result["labels"]
        runs = np.array(result["curves"][method])
        ax.plot(labels, runs.mean(axis=0), "o-", label=method)
        ax.fill_between(labels, runs.min(axis=0), runs.max(axis=0), alpha=0.15)
    ax.axhline(result["target_force_rmse_eV_A"], color="k", ls="--", lw=1, label="target")
    ax.set_xlabel("DFT (EMT) labels")
    ax.set_ylabel("test force RMSE (eV/Å)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"Cu EMT MD, {result['seeds']} seeds, committee of {result['members']} MACE")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (~1-2 min)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--target", type=float, default=None, help="target force RMSE (eV/Å)")
    parser.add_argument(
        "--target-error",
        type=float,
        default=0.3,
        help="alflow's target max per-atom force error for calibration (eV/Å)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="learning-curve PNG")
    parser.add_argument(
        "--calibration-plot", type=Path, default=None, help="alflow calibration PNG (seed 0)"
    )
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    if args.seeds:
        setup = Setup(**{**setup.__dict__, "seeds": args.seeds})
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    started = time.monotonic()
    pool, test = build_data(setup)
    pool_data, test_data = to_data(pool), to_data(test)
    e0_eV = float(np.mean([a.info["energy_eV"] / len(a) for a in pool]))
    print(f"pool {len(pool)} frames, test {len(test)} frames ({time.monotonic() - started:.0f} s)")
    runs = []
    for seed in range(setup.seeds):
        rng = np.random.default_rng(seed)
        labeled = [int(i) for i in rng.choice(len(pool), setup.initial, replace=False)]
        committee = Committee(setup.members, seed, e0_eV)
        committee.train([pool_data[i] for i in labeled], setup.first_epochs, seed)
        base = {
            "committee": committee,
            "labeled": labeled,
            "pool_data": pool_data,
            "test_data": test_data,
            "target_error_eV_A": args.target_error,
        }
        for method in METHODS:
            run = run_method(method, seed, setup, pool, test, base)
            runs.append(run)
            last = run["curve"][-1]
            print(
                f"seed {seed} {method:>6}: RMSE "
                + " ".join(f"{p['force_rmse_eV_A']:.3f}" for p in run["curve"])
                + f" eV/Å at {last['labels']} labels ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    labels = [p["labels"] for p in runs[0]["curve"]]
    curves = {
        m: [[p["force_rmse_eV_A"] for p in r["curve"]] for r in runs if r["method"] == m]
        for m in METHODS
    }
    mean_curves = {m: np.mean(curves[m], axis=0).tolist() for m in METHODS}
    target = args.target if args.target is not None else mean_curves["random"][-1]
    reached = {
        m: labels_to_target(
            [
                {"labels": n, "force_rmse_eV_A": r}
                for n, r in zip(labels, mean_curves[m], strict=True)
            ],
            target,
        )
        for m in METHODS
    }
    result = {
        "benchmark": "data_efficiency",
        "quick": args.quick,
        "seeds": setup.seeds,
        "members": setup.members,
        "pool_frames": len(pool),
        "test_frames": len(test),
        "labels": labels,
        "curves": curves,
        "mean_force_rmse_eV_A": mean_curves,
        "target_force_rmse_eV_A": target,
        "target_source": "--target"
        if args.target is not None
        else "random's RMSE at its last label count",
        "labels_to_target": reached,
        "alflow_pool_spearman": [
            [rec["pool_spearman"] for rec in r["records"]] for r in runs if r["method"] == "alflow"
        ],
        "alflow_windows": [
            [(rec["selection"]["thresholds"] or {}).get("lo") for rec in r["records"]]
            for r in runs
            if r["method"] == "alflow"
        ],
        "wall_s": round(time.monotonic() - started, 1),
    }
    if args.plot:
        plot_curves(result, args.plot)
    if args.calibration_plot:
        from alflow.calibration import plot_calibration

        records = next(r["records"] for r in runs if r["method"] == "alflow")
        plot_calibration(records, args.calibration_plot)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
