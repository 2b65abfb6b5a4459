"""Data efficiency of alflow's selection against random and DP-GEN-style sampling.

EMT is the oracle (fast and exact). Two scenarios, each with one candidate
pool of EMT Langevin MD frames of 8-atom Cu and one held-out test set of
frames from independent MD runs (never in the pool), shared by every method:

- ``realistic`` (headline): the pool is what MD exploration produces, long
  trajectories sampled every 4 fs (neighbouring frames are near-duplicates),
  76 % of the frames at 300 K in the unstrained cell, fewer at 600/900 K, a
  few at 1500 K and in strained cells; the test set covers every temperature
  (300/600/900/1500 K) x strain (-3/0/+4 %) evenly.
- ``uniform``: the earlier setting, the pool spread evenly over
  300/900/1500 K x 3 strains (frames every 20 fs), the test set from the same
  conditions; the easy case for random sampling.

Each method starts from the same few random pool frames and the same initial
committee, then for ``rounds`` rounds: trains a committee of tiny MACE models
(warm-started from its previous round, as a campaign does), evaluates it on
the pool and the test set, and labels ``batch`` more pool frames:

- ``random``: uniformly at random from the unlabeled pool;
- ``dpgen``: at random among frames inside a fixed trust window on the max
  force deviation (DP-GEN), topped up at random when the window holds fewer;
- ``alflow``: :func:`alflow.calibration.calibrated_thresholds` (fit on the
  frames labeled so far) + :func:`alflow.selection.select_candidates` with
  audit frames and FPS on mean MACE node features, topped up with the most
  uncertain frames below the window when the window holds fewer;
- ``alflow-*``: variants of alflow's selection (:data:`ALFLOW_VARIANTS`);
- ``oracle`` (reference, not a method one can run): the frames whose true
  error is largest, i.e. selection with a perfect uncertainty.

Every method labels exactly the same number of frames per round, and every
committee is trained each round close to convergence (200 epochs on the
initial frames, 100 per round, the last third at a tenth of the learning
rate), so the curves measure the data, not where a noisy descent happened to
stop. The curve is the force RMSE of the committee mean on the test set
against the number of labels, averaged over seeds. ``labels_to_target`` is
the number of labels after which the seed-averaged RMSE first reaches the
target (a multiple of the labels per round); ``labels_to_target_interpolated``
is where the curve crosses it, log(RMSE) interpolated between rounds. By
default the target is the RMSE random sampling reaches with all its labels
(per scenario).

Usage::

    python benchmarks/data_efficiency.py --quick        # about a minute
    python benchmarks/data_efficiency.py --plot-dir docs/figures   # full, ~50 min
    python benchmarks/data_efficiency.py --scenarios realistic --batch 6   # coarser rounds
    python benchmarks/data_efficiency.py --scenarios realistic \
        --methods random,alflow,alflow-noaudit,oracle           # variants, reference

``--committee-kind shared_body`` runs the alflow methods with a shared-body
committee (member 0's body, the others their own readouts; see
:class:`Committee`); random, dpgen and oracle keep independent members.

Runs are spread over ``--workers`` processes (default 2, one thread each).
The last line printed is one JSON object: ``labels_to_target`` and
``target_force_rmse_eV_A`` of the headline scenario at the top level, every
scenario's figures under ``scenarios``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("random", "dpgen", "alflow")


@dataclass(frozen=True)
class Setup:
    """Sizes of one benchmark run (shared by both scenarios)."""

    seeds: int
    rounds: int
    batch: int
    initial: int
    members: int
    first_epochs: int
    epochs: int  # per round; the last ``anneal_fraction`` of them at a tenth of the rate
    scale: float  # fraction of each scenario's frame counts
    anneal_fraction: float = 1 / 3


QUICK = Setup(
    seeds=2, rounds=3, batch=6, initial=6, members=2, first_epochs=30, epochs=12, scale=0.5
)
FULL = Setup(
    seeds=3, rounds=10, batch=3, initial=6, members=3, first_epochs=200, epochs=100, scale=1.0
)


@dataclass(frozen=True)
class Trajectory:
    """One EMT Langevin MD run: ``frames`` frames every ``stride`` steps of 2 fs."""

    temperature_K: float
    strain: float
    frames: int
    stride: int


@dataclass(frozen=True)
class Scenario:
    """Where the candidate pool and the held-out test set come from."""

    name: str
    description: str
    pool: tuple[Trajectory, ...]
    test: tuple[Trajectory, ...]


def _grid(
    temperatures: tuple[float, ...], strains: tuple[float, ...], frames: int, stride: int
) -> tuple[Trajectory, ...]:
    return tuple(Trajectory(t, e, frames, stride) for t in temperatures for e in strains)


#: Headline: what MD exploration produces. Long trajectories sampled every
#: 4 fs (a Cu vibration lasts ~150 fs, so neighbouring frames are
#: near-duplicates), three quarters of the frames at 300 K, fewer at 600 and
#: 900 K, a few at 1500 K and in strained cells. The test set covers every
#: temperature x strain the potential is meant for, evenly, from independent
#: runs (several of these combinations never occur in the pool).
REALISTIC = Scenario(
    "realistic",
    "correlated MD pool (frames every 4 fs), 76 % at 300 K; "
    "test set even over 300/600/900/1500 K x -3/0/+4 % strain",
    pool=(
        Trajectory(300.0, 0.0, 150, 2),
        Trajectory(300.0, -0.03, 10, 2),
        Trajectory(300.0, 0.04, 10, 2),
        Trajectory(600.0, 0.0, 24, 2),
        Trajectory(900.0, 0.0, 14, 2),
        Trajectory(900.0, 0.04, 4, 2),
        Trajectory(1500.0, 0.0, 8, 2),
        Trajectory(1500.0, -0.03, 4, 2),
    ),
    test=_grid((300.0, 600.0, 900.0, 1500.0), (-0.03, 0.0, 0.04), 5, 25),
)

#: The earlier benchmark: pool spread evenly over 3 temperatures x 3 strains,
#: frames every 20 fs, test set from the same conditions (easy for random).
UNIFORM = Scenario(
    "uniform",
    "pool even over 300/900/1500 K x -3/0/+4 % strain (frames every 20 fs); "
    "test set from the same conditions",
    pool=_grid((300.0, 900.0, 1500.0), (-0.03, 0.0, 0.04), 24, 10),
    test=_grid((300.0, 900.0, 1500.0), (-0.03, 0.0, 0.04), 6, 10),
)

SCENARIOS = {"realistic": REALISTIC, "uniform": UNIFORM}


# --------------------------------------------------------------------------- data


def md_frames(
    temperature_K: float, strain: float, n: int, seed: int, stride: int = 10
) -> list[Any]:
    """EMT Langevin MD frames of 8-atom Cu (every ``stride`` steps of 2 fs after 40 steps)."""
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
        dyn.run(stride)
        frame = atoms.copy()
        frame.calc = None
        frame.info["energy_eV"] = float(atoms.get_potential_energy())
        frame.info["condition"] = f"{temperature_K:g} K, {strain:+.0%}"
        frame.arrays["forces_eV_A"] = atoms.get_forces().copy()
        frames.append(frame)
    return frames


def build_data(scenario: Scenario, scale: float) -> tuple[list[Any], list[Any]]:
    """The shared candidate pool and the held-out test set of a scenario.

    Test trajectories have other random seeds than the pool's, so no test
    frame is in the pool. ``scale`` < 1 shrinks every trajectory (``--quick``).
    """
    pool, test = [], []
    for run, traj in enumerate(scenario.pool):
        n = max(1, round(traj.frames * scale))
        pool += md_frames(traj.temperature_K, traj.strain, n, 1000 + run, traj.stride)
    for run, traj in enumerate(scenario.test):
        n = max(2, round(traj.frames * scale))
        test += md_frames(traj.temperature_K, traj.strain, n, 5000 + run, traj.stride)
    return pool, test


# --------------------------------------------------------------------------- model


class Committee:
    """Tiny MACE models trained in this process (the benchmark owns the process).

    ``kind="shared_body"`` (``committee.kind``): members 1..M-1 carry member
    0's body (copied after each training of member 0, frozen) and train their
    own readouts only, drawn anew from their seed at the start and warm-started
    after, as the loop's ``restart: continue`` does.
    """

    def __init__(self, members: int, seed: int, e0_eV: float, kind: str = "independent") -> None:
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
        self.kind = kind
        if kind == "shared_body":
            import copy

            from alflow.committee.readout_fit import reinitialise_readouts

            for m in range(1, members):
                self.models[m] = copy.deepcopy(self.models[0])
                reinitialise_readouts(self.models[m], seed * 100 + m)
        self.optimizers = [
            torch.optim.Adam(
                (model.readouts if m and kind == "shared_body" else model).parameters(), lr=0.01
            )
            for m, model in enumerate(self.models)
        ]

    def clone(self) -> Committee:
        """An independent copy (models and optimiser states)."""
        import copy

        return copy.deepcopy(self)

    def train(self, data: list[Any], epochs: int, seed: int, anneal_fraction: float) -> None:
        """Force-weighted training of every member (mini-batches of 6, shuffled per member).

        Adam at a learning rate of 0.01, the last ``anneal_fraction`` of the
        epochs at 0.001, so each round ends near a minimum rather than at a
        random point of a noisy descent (the loop's MACE training uses a
        scheduler and EMA to the same end).
        """
        import torch
        from mace.tools import torch_geometric

        for m, (model, optimizer) in enumerate(zip(self.models, self.optimizers, strict=True)):
            if m and self.kind == "shared_body":  # member 0's body, frozen
                self._copy_body(model)
            generator = torch.Generator().manual_seed(seed * 1000 + m)
            loader = torch_geometric.dataloader.DataLoader(
                data, batch_size=6, shuffle=True, generator=generator
            )
            model.train()
            anneal_from = epochs - round(anneal_fraction * epochs)
            for epoch in range(epochs):
                for group in optimizer.param_groups:
                    group["lr"] = 0.01 if epoch < anneal_from else 0.001
                for batch in loader:
                    optimizer.zero_grad()
                    out = model(batch.to_dict(), training=True, compute_force=True)
                    n_atoms = (batch.ptr[1:] - batch.ptr[:-1]).to(out["energy"].dtype)
                    loss = torch.mean((out["forces"] - batch.forces) ** 2) + 0.01 * torch.mean(
                        ((out["energy"] - batch.energy) / n_atoms) ** 2
                    )
                    loss.backward()
                    optimizer.step()

    def _copy_body(self, model: Any) -> None:
        """Member 0's body (every BODY_MODULES tensor) into ``model``, frozen."""
        from alflow.committee.shared_body import BODY_MODULES

        for name in BODY_MODULES:
            getattr(model, name).load_state_dict(getattr(self.models[0], name).state_dict())
            for parameter in getattr(model, name).parameters():
                parameter.requires_grad_(False)

    def evaluate(
        self, data: list[Any]
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """forces_comm (M, N, 3) per frame, committee-mean forces, node features (N, d) per frame."""
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
                    features += [f[ptr[k] : ptr[k + 1]] for k in range(len(ptr) - 1)]
            per_member.append(np.concatenate(forces))
        stacked = np.stack(per_member)  # (M, total atoms, 3)
        sizes = [int(d.num_nodes) for d in data]
        bounds = np.cumsum([0, *sizes])
        comm = [stacked[:, bounds[k] : bounds[k + 1]] for k in range(len(data))]
        return comm, [c.mean(axis=0) for c in comm], features


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

#: alflow's selection as the loop runs it, and the variants tried against it
#: (``--methods alflow,alflow-wfps,...``). Keys: ``min_points`` (labeled
#: frames before calibrating), ``weighting`` (FPS ``"none"`` or
#: ``"score"``-weighted), ``top_factor`` (FPS only over the top
#: factor x budget candidates by deviation), ``pre`` (before calibration:
#: ``"fps"`` in the fixed window or ``"top"`` most uncertain), ``audit``
#: (audit frames per round), ``descriptor`` (FPS on the ``"mean"`` node
#: features, ``"meanstd"`` their mean and std over atoms, or ``"atoms"``:
#: per atom, a frame scored by its most novel atom).
ALFLOW_VARIANTS: dict[str, dict[str, Any]] = {
    "alflow": {
        "min_points": None,
        "weighting": "none",
        "top_factor": None,
        "pre": "fps",
        "audit": 1,
        "descriptor": "mean",
    },
    "alflow-meanstd": {"descriptor": "meanstd"},
    "alflow-atoms": {"descriptor": "atoms"},
    "alflow-noaudit": {"audit": 0},
    "alflow-wfps": {"weighting": "score"},
    "alflow-top3": {"top_factor": 3.0},
    "alflow-late": {"min_points": 8},
    "alflow-toppre": {"pre": "top"},
    "alflow-wfps-early": {"weighting": "score", "min_points": 4},
}


def variant(method: str) -> dict[str, Any]:
    """Settings of an alflow method (the base ``alflow`` ones overridden by the variant's)."""
    return {**ALFLOW_VARIANTS["alflow"], **ALFLOW_VARIANTS[method]}


def structure_descriptors(atom_features: list[np.ndarray], kind: str) -> np.ndarray:
    """Per-frame descriptors from node features: their mean over atoms, or mean and std."""
    means = np.stack([f.mean(axis=0) for f in atom_features])
    if kind != "meanstd":
        return means
    return np.concatenate([means, np.stack([f.std(axis=0) for f in atom_features])], axis=1)


def select(
    method: str,
    rng: np.random.Generator,
    remaining: np.ndarray,
    deviation: np.ndarray,
    atom_features: list[np.ndarray],
    labeled: list[int],
    history: dict[str, list[float]],
    pool: list[Any],
    batch: int,
    config: Any,
    round_index: int,
    true_error: np.ndarray,
) -> tuple[list[int], dict[str, Any]]:
    """Pool indices to label next (exactly ``batch``) and what the method saw."""
    from alflow.calibration import calibrated_thresholds
    from alflow.selection import FpsVariant, select_candidates

    if method == "random":
        return [int(i) for i in rng.choice(remaining, batch, replace=False)], {}
    if method == "oracle":  # reference: the frames the committee really gets most wrong
        return [int(i) for i in remaining[np.argsort(-true_error[remaining])][:batch]], {}
    lo, hi = config.fixed_window()
    if method == "dpgen":
        inside = remaining[(deviation[remaining] >= lo) & (deviation[remaining] < hi)]
        picked = list(rng.choice(inside, min(batch, len(inside)), replace=False))
        rest = np.setdiff1d(remaining, picked)
        picked += list(rng.choice(rest, batch - len(picked), replace=False))
        return [int(i) for i in picked], {"in_window": len(inside)}
    settings = variant(method)
    descriptors = structure_descriptors(atom_features, settings["descriptor"])
    per_atom = settings["descriptor"] == "atoms"
    thresholds = calibrated_thresholds(history["score"], history["error"], config)
    if thresholds.source != "calibrated" and settings["pre"] == "top":
        config = config.model_copy(update={"diversity": "none"})
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
        fps=FpsVariant(
            weighting=settings["weighting"],
            top_factor=settings["top_factor"],
            atom_descriptors=[atom_features[i] for i in remaining] if per_atom else None,
            known_atom_descriptors=np.concatenate([atom_features[i] for i in labeled])
            if per_atom
            else None,
        ),
    )
    picked = [int(remaining[i]) for i in result.selected]
    if len(picked) < batch:  # top up with the most uncertain frames not yet picked
        order = remaining[np.argsort(-deviation[remaining])]
        picked += [int(i) for i in order if int(i) not in picked][: batch - len(picked)]
    return picked, {"thresholds": thresholds.as_doc(), "audit": len(result.audit)}


# --------------------------------------------------------------------------- runs

#: Filled by :func:`main` before the worker processes fork: scenario name ->
#: (pool, test, pool AtomicData, test AtomicData, E0 per atom).
_DATA: dict[str, tuple[list[Any], list[Any], list[Any], list[Any], float]] = {}
#: committee.kind of the alflow methods (set by main before the workers fork)
_COMMITTEE_KIND = ["independent"]


def force_rmse(predicted: list[np.ndarray], frames: list[Any]) -> float:
    """Force-component RMSE (eV/Å) of predicted forces against the frames' labels."""
    diff = np.concatenate(
        [(p - t.arrays["forces_eV_A"]).ravel() for p, t in zip(predicted, frames, strict=True)]
    )
    return float(np.sqrt(np.mean(diff**2)))


def run_method(
    job: tuple[str, str, int, Setup, float],
) -> dict[str, Any]:
    """Learning curve of one (scenario, method, seed), and its per-round records.

    Every method of a seed starts from the same initial frames and the same
    initial committee (trained here, deterministically, in each process).
    """
    scenario, method, seed, setup, target_error = job
    import torch

    torch.set_num_threads(1)
    from alflow.calibration import frame_force_error_eV_A, spearman
    from alflow.committee.uncertainty import max_force_deviation
    from alflow.config import SelectionConfig

    started = time.monotonic()
    pool, test, pool_data, test_data, e0_eV = _DATA[scenario]
    init_rng = np.random.default_rng(seed)
    labeled = [int(i) for i in init_rng.choice(len(pool), setup.initial, replace=False)]
    kind = _COMMITTEE_KIND[0] if method.startswith("alflow") else "independent"
    committee = Committee(setup.members, seed, e0_eV, kind)
    committee.train(
        [pool_data[i] for i in labeled], setup.first_epochs, seed, setup.anneal_fraction
    )

    settings = variant(method) if method.startswith("alflow") else {}
    config = SelectionConfig(
        trust_lo_eV_A=0.05,
        trust_hi_eV_A=0.5,
        target_force_error_eV_A=target_error,
        # None: the loop's default (SelectionConfig)
        **(
            {}
            if settings.get("min_points") is None
            else {"calibration_min_points": settings["min_points"]}
        ),
        audit_per_iteration=settings.get("audit", 1),
        max_per_iteration=setup.batch,
    )
    rng = np.random.default_rng(seed * 7 + (METHODS.index(method) if method in METHODS else 2))
    history: dict[str, list[float]] = {"score": [], "error": []}
    curve, records = [], []
    for round_index in range(setup.rounds + 1):
        if round_index:
            committee.train(
                [pool_data[i] for i in labeled],
                setup.epochs,
                seed + round_index,
                setup.anneal_fraction,
            )
        _, test_mean, _ = committee.evaluate(test_data)
        curve.append({"labels": len(labeled), "force_rmse_eV_A": force_rmse(test_mean, test)})
        if round_index == setup.rounds:
            by_condition: dict[str, list[int]] = {}
            for k, frame in enumerate(test):
                by_condition.setdefault(frame.info["condition"], []).append(k)
            final_by_condition = {
                c: force_rmse([test_mean[k] for k in ks], [test[k] for k in ks])
                for c, ks in by_condition.items()
            }
            break
        comm, mean, atom_features = committee.evaluate(pool_data)
        deviation = np.array([max_force_deviation(c) for c in comm])
        remaining = np.setdiff1d(np.arange(len(pool)), labeled)
        pool_error = np.array(
            [
                frame_force_error_eV_A(m, p.arrays["forces_eV_A"])
                for m, p in zip(mean, pool, strict=True)
            ]
        )
        picked, info = select(
            method,
            rng,
            remaining,
            deviation,
            atom_features,
            labeled,
            history,
            pool,
            setup.batch,
            config,
            round_index,
            pool_error,
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
                "pool_spearman": spearman(deviation, pool_error),
            }
        )
    conditions = [pool[i].info["condition"] for i in labeled[setup.initial :]]
    return {
        "scenario": scenario,
        "method": method,
        "seed": seed,
        "curve": curve,
        "records": records,
        "final_rmse_by_condition": final_by_condition,
        "picked_at_300K": sum(c.startswith("300 K") for c in conditions) / max(len(conditions), 1),
        "wall_s": round(time.monotonic() - started, 1),
    }


def labels_to_target(curve: list[dict[str, float]], target: float) -> int | None:
    """Labels at the first point of a curve at or below ``target`` (None: never)."""
    for point in curve:
        if point["force_rmse_eV_A"] <= target + 1e-12:
            return int(point["labels"])
    return None


def labels_to_target_interpolated(curve: list[dict[str, float]], target: float) -> float | None:
    """Where a curve first crosses ``target``, log(RMSE) interpolated linearly in labels.

    A finer estimate than :func:`labels_to_target` between two rounds; equal
    to it when a measured point sits on the target. None: never reached.
    """
    if curve and curve[0]["force_rmse_eV_A"] <= target:
        return float(curve[0]["labels"])
    for before, after in itertools.pairwise(curve):
        hi, lo = before["force_rmse_eV_A"], after["force_rmse_eV_A"]
        if lo <= target < hi:
            share = (np.log(hi) - np.log(target)) / (np.log(hi) - np.log(lo))
            return float(before["labels"] + share * (after["labels"] - before["labels"]))
    return None


def summarize(
    scenario: Scenario, runs: list[dict[str, Any]], methods: list[str], target: float | None
) -> dict[str, Any]:
    """Seed-averaged curves, the target and labels to reach it, for one scenario."""
    pool, test = _DATA[scenario.name][:2]
    labels = [p["labels"] for p in runs[0]["curve"]]
    mine = [r for r in runs if r["scenario"] == scenario.name]
    curves = {
        m: [[p["force_rmse_eV_A"] for p in r["curve"]] for r in mine if r["method"] == m]
        for m in methods
    }
    mean_curves = {m: np.mean(curves[m], axis=0).tolist() for m in methods}
    std_curves = {m: np.std(curves[m], axis=0).tolist() for m in methods}
    if target is None:
        target = mean_curves["random"][-1] if "random" in methods else None
    mean_points = {
        m: [
            {"labels": n, "force_rmse_eV_A": r} for n, r in zip(labels, mean_curves[m], strict=True)
        ]
        for m in methods
    }
    reached = {
        m: None if target is None else labels_to_target(mean_points[m], target) for m in methods
    }
    interpolated = {
        m: None if target is None else labels_to_target_interpolated(mean_points[m], target)
        for m in methods
    }
    conditions = sorted({f.info["condition"] for f in pool})
    composition = {c: sum(f.info["condition"] == c for f in pool) for c in conditions}
    first_alflow = [r for r in mine if r["method"] == "alflow"]
    final_by_condition = {
        m: {
            c: float(np.mean([r["final_rmse_by_condition"][c] for r in mine if r["method"] == m]))
            for c in mine[0]["final_rmse_by_condition"]
        }
        for m in methods
    }
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "pool_frames": len(pool),
        "pool_composition": composition,
        "test_frames": len(test),
        "test_conditions": len({f.info["condition"] for f in test}),
        "labels": labels,
        "curves": curves,
        "mean_force_rmse_eV_A": mean_curves,
        "std_force_rmse_eV_A": std_curves,
        "target_force_rmse_eV_A": target,
        "labels_to_target": reached,
        "labels_to_target_interpolated": interpolated,
        "final_rmse_by_condition": final_by_condition,
        "picked_at_300K": {
            m: float(np.mean([r["picked_at_300K"] for r in mine if r["method"] == m]))
            for m in methods
        },
        "alflow_pool_spearman": [
            [rec["pool_spearman"] for rec in r["records"]] for r in first_alflow
        ],
        "alflow_windows": [
            [(rec["selection"]["thresholds"] or {}).get("lo") for rec in r["records"]]
            for r in first_alflow
        ],
        "_alflow_records": first_alflow[0]["records"] if first_alflow else None,
    }


def plot_curves(summary: dict[str, Any], path: Path, seeds: int, members: int) -> None:
    """Seed-averaged RMSE vs labels per method (with min-max band) and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    labels = summary["labels"]
    for method, runs in summary["curves"].items():
        runs = np.array(runs)
        ax.plot(labels, runs.mean(axis=0), "o-", label=method)
        ax.fill_between(labels, runs.min(axis=0), runs.max(axis=0), alpha=0.15)
    if summary["target_force_rmse_eV_A"] is not None:
        ax.axhline(summary["target_force_rmse_eV_A"], color="k", ls="--", lw=1, label="target")
    ax.set_xlabel("DFT (EMT) labels")
    ax.set_ylabel("test force RMSE (eV/Å)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(
        f"Cu EMT MD, {summary['scenario']} pool, {seeds} seeds, committee of {members} MACE",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (~1-2 min)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument(
        "--scenarios",
        default="realistic,uniform",
        help="comma-separated, first is the headline (realistic, uniform)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated; random must be included for the default target; "
        f"alflow variants: {', '.join(ALFLOW_VARIANTS)}",
    )
    parser.add_argument(
        "--epochs",
        default=None,
        help="training epochs FIRST,PER_ROUND (default 200,100; --quick 30,12)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="labels per round (default 3; --quick 6), the same total labels in more or "
        "fewer rounds",
    )
    parser.add_argument(
        "--committee-kind",
        choices=("independent", "shared_body"),
        default="independent",
        help="committee kind of the alflow methods (random, dpgen and oracle stay independent)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    parser.add_argument("--target", type=float, default=None, help="target force RMSE (eV/Å)")
    parser.add_argument(
        "--target-error",
        type=float,
        default=0.3,
        help="alflow's target max per-atom force error for calibration (eV/Å)",
    )
    parser.add_argument(
        "--plot-dir",
        type=Path,
        default=None,
        help="write data_efficiency[_SCENARIO].png and calibration[_SCENARIO].png here "
        "(no suffix for the headline scenario)",
    )
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    if args.batch:
        total = setup.rounds * setup.batch
        if total % args.batch:
            parser.error(f"--batch must divide the {total} labels after the initial ones")
        setup = Setup(**{**setup.__dict__, "batch": args.batch, "rounds": total // args.batch})
    if args.epochs:
        first, later = (int(x) for x in args.epochs.split(","))
        setup = Setup(**{**setup.__dict__, "first_epochs": first, "epochs": later})
    if args.seeds:
        setup = Setup(**{**setup.__dict__, "seeds": args.seeds})
    scenarios = [SCENARIOS[name] for name in args.scenarios.split(",")]
    methods = args.methods.split(",")
    for method in methods:
        if method not in (*METHODS, "oracle") and method not in ALFLOW_VARIANTS:
            parser.error(f"unknown method {method}")
    _COMMITTEE_KIND[0] = args.committee_kind
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", message="The TorchScript type system")
    import torch

    torch.set_num_threads(1)
    started = time.monotonic()
    for scenario in scenarios:
        pool, test = build_data(scenario, setup.scale)
        e0_eV = float(np.mean([a.info["energy_eV"] / len(a) for a in pool]))
        _DATA[scenario.name] = (pool, test, to_data(pool), to_data(test), e0_eV)
        print(
            f"{scenario.name}: pool {len(pool)} frames, test {len(test)} frames "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    jobs = [
        (scenario.name, method, seed, setup, args.target_error)
        for scenario in scenarios
        for seed in range(setup.seeds)
        for method in methods
    ]
    runs = []

    def report(run: dict[str, Any]) -> None:
        runs.append(run)
        print(
            f"{run['scenario']:>9} seed {run['seed']} {run['method']:>14}: RMSE "
            + " ".join(f"{p['force_rmse_eV_A']:.4f}" for p in run["curve"])
            + f" eV/Å ({run['wall_s']:.0f} s; {time.monotonic() - started:.0f} s)",
            flush=True,
        )

    if args.workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(args.workers) as workers:
            for run in workers.imap_unordered(run_method, jobs):
                report(run)
    else:
        for job in jobs:
            report(run_method(job))
    order = {(j[0], j[1], j[2]): k for k, j in enumerate(jobs)}
    runs.sort(key=lambda r: order[(r["scenario"], r["method"], r["seed"])])
    summaries = {
        s.name: summarize(s, runs, methods, args.target if k == 0 else None)
        for k, s in enumerate(scenarios)
    }
    if args.plot_dir:
        from alflow.calibration import plot_calibration

        for k, scenario in enumerate(scenarios):
            suffix = "" if k == 0 else f"_{scenario.name}"
            summary = summaries[scenario.name]
            plot_curves(
                summary,
                args.plot_dir / f"data_efficiency{suffix}.png",
                setup.seeds,
                setup.members,
            )
            if summary["_alflow_records"]:
                plot_calibration(
                    summary["_alflow_records"], args.plot_dir / f"calibration{suffix}.png"
                )
    for summary in summaries.values():
        summary.pop("_alflow_records")
    headline = summaries[scenarios[0].name]
    result = {
        "benchmark": "data_efficiency",
        "quick": args.quick,
        "seeds": setup.seeds,
        "members": setup.members,
        "committee_kind": args.committee_kind,
        "headline_scenario": scenarios[0].name,
        "labels_to_target": headline["labels_to_target"],
        "labels_to_target_interpolated": headline["labels_to_target_interpolated"],
        "labels_per_round": setup.batch,
        "target_force_rmse_eV_A": headline["target_force_rmse_eV_A"],
        "target_source": "--target"
        if args.target is not None
        else "random's RMSE at its last label count (per scenario)",
        "scenarios": summaries,
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
