"""Train a shared-body member: member 0's MACE body, frozen, with new readouts of its own.

:func:`train_readouts` loads member 0's ``.model`` file, re-initialises its
readouts (every readout weight drawn from e3nn's default N(0, 1) with the
member's seed; or this member's readouts of the previous iteration, when
continuing), freezes everything else (body, E0s, scale/shift, the pair
prior) and fits the readouts to the labeled frames with MACE's weighted
loss: ``energy_weight · <w (ΔE/N)²> + forces_weight · <w ΔF²> +
stress_weight · <w Δσ²>`` (``w``: the frame's ``config_weight``; stress
only on frames that carry it). Adam (amsgrad) at ``training.lr`` for
``training.epochs`` epochs on a seeded train/validation split
(:func:`~alflow.committee.training_set.split_frames`); the best-validation readouts
are kept (no EMA). The result is an ordinary MACE ``.model`` file (a pickled
module, like mace-torch writes): MACECalculator, LAMMPS and the export read
it as any member.

mace-torch's ``--foundation_model`` + ``--freeze 6`` is not used: it resets
the scale to 1, turns the radial Bessel weights into parameters and loads
the readouts unless element filtering is switched off, so the body would not
stay bitwise member 0's.

mace and torch are imported inside the functions; torch's default dtype
and thread count are restored after the fit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from alflow.committee.calculator import _import_mace
from alflow.committee.shared_body import BODY_MODULES
from alflow.committee.train import TrainedMember
from alflow.committee.training_set import split_frames
from alflow.config import TrainingConfig
from alflow.errors import TrainingError

__all__ = ["reinitialise_readouts", "train_readouts"]

logger = logging.getLogger(__name__)


def reinitialise_readouts(model: Any, seed: int) -> None:
    """Draw every readout weight anew from N(0, 1) (e3nn's initialisation), seeded."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for parameter in model.readouts.parameters():
            fresh = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            parameter.copy_(fresh.to(parameter))


def _labelled_graphs(frames: Sequence[Atoms], model: Any, device: str) -> list[dict[str, Any]]:
    """One MACE graph per frame with its labels (energy, forces, stress, weight)."""
    import torch

    mace = _import_mace()
    zs = [int(z) for z in model.atomic_numbers]
    z_table = mace.tools.AtomicNumberTable(zs)
    heads = list(getattr(model, "heads", None) or ["Default"])
    head = "Default" if "Default" in heads else heads[-1]
    keyspec = mace.data.KeySpecification(info_keys={}, arrays_keys={})
    graphs = []
    for i, atoms in enumerate(frames):
        unknown = sorted(set(int(z) for z in atoms.numbers) - set(zs))
        if unknown:
            raise TrainingError(f"frame {i}: elements {unknown} are not in member 0's model")
        results = getattr(atoms.calc, "results", None) or {}
        if "energy" not in results or "forces" not in results:
            raise TrainingError(f"frame {i}: no reference energy and forces")
        config = mace.data.config_from_atoms(atoms, key_specification=keyspec, head_name=head)
        data = mace.data.AtomicData.from_config(
            config, z_table=z_table, cutoff=float(model.r_max), heads=heads
        )
        stress = results.get("stress")
        if stress is not None and atoms.pbc.all():
            stress = np.asarray(stress, dtype=float)
            if stress.shape == (6,):
                xx, yy, zz, yz, xz, xy = stress
                stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        else:
            stress = None
        graphs.append(
            {
                "data": data,
                "energy": float(results["energy"]),
                "forces": torch.tensor(np.asarray(results["forces"], dtype=float)),
                "stress": None if stress is None else torch.tensor(stress),
                "weight": float(atoms.info.get("config_weight", 1.0)),
                "n_atoms": len(atoms),
            }
        )
    return graphs


def _loss(
    model: Any,
    items: Sequence[dict[str, Any]],
    training: TrainingConfig,
    device: str,
    create_graph: bool,
) -> tuple[Any, dict[str, float]]:
    """MACE's weighted energy/forces(/stress) loss of ``items`` as one batch."""
    import torch

    mace = _import_mace()
    dtype = next(model.parameters()).dtype
    batch = mace.tools.torch_geometric.Batch.from_data_list([it["data"] for it in items])
    batch = batch.to(device)
    want_stress = training.stress_weight > 0 and any(it["stress"] is not None for it in items)
    out = model(
        batch.to_dict(), training=create_graph, compute_force=True, compute_stress=want_stress
    )
    weights = torch.tensor([it["weight"] for it in items], dtype=dtype, device=device)
    n_atoms = torch.tensor([it["n_atoms"] for it in items], dtype=dtype, device=device)
    e_ref = torch.tensor([it["energy"] for it in items], dtype=dtype, device=device)
    f_ref = torch.cat([it["forces"] for it in items]).to(device=device, dtype=dtype)
    atom_weights = torch.repeat_interleave(weights, n_atoms.to(torch.int64))
    de = (out["energy"] - e_ref) / n_atoms
    df = out["forces"] - f_ref
    loss = training.energy_weight * torch.mean(weights * de**2)
    loss = loss + training.forces_weight * torch.mean(atom_weights[:, None] * df**2)
    if want_stress:
        mask = [k for k, it in enumerate(items) if it["stress"] is not None]
        s_ref = torch.stack([items[k]["stress"] for k in mask]).to(device=device, dtype=dtype)
        ds = out["stress"][mask] - s_ref
        loss = loss + training.stress_weight * torch.mean(weights[mask, None, None] * ds**2)
    sums = {
        "se_e_atom": float(torch.sum(de.detach() ** 2)),
        "se_f": float(torch.sum(df.detach() ** 2)),
        "n_f": float(df.numel()),
        "n_e": float(len(items)),
    }
    return loss, sums


def _load_base(base_model: Path, device: str, dtype: str) -> Any:
    import torch

    if not Path(base_model).is_file():
        raise TrainingError(f"member 0's model not found: {base_model}")
    try:
        model = torch.load(base_model, map_location=device, weights_only=False)
    except Exception as exc:  # torch/pickle raise many kinds for a bad file
        raise TrainingError(f"cannot load member 0's model {base_model}: {exc}") from exc
    if not all(hasattr(model, name) for name in (*BODY_MODULES, "readouts")):
        raise TrainingError(f"{base_model} is not a MACE model with readouts")
    return model.to(device=device, dtype=torch.float64 if dtype == "float64" else torch.float32)


def _epochs(
    model: Any, train: list, valid: list, training: TrainingConfig, device: str, seed: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Adam on the readouts; returns the best-validation readout state and its errors."""
    import torch

    params = list(model.readouts.parameters())
    optimizer = torch.optim.Adam(params, lr=training.lr, amsgrad=True)
    rng = np.random.default_rng(seed)
    batch_size = max(1, min(training.batch_size, len(train)))
    best: tuple[float, dict[str, Any], dict[str, float]] | None = None
    for _ in range(training.epochs):
        order = rng.permutation(len(train))
        for start in range(0, len(order), batch_size):
            items = [train[i] for i in order[start : start + batch_size]]
            optimizer.zero_grad()
            loss, _ = _loss(model, items, training, device, create_graph=True)
            loss.backward()
            optimizer.step()
        valid_loss, sums = _loss(model, valid, training, device, create_graph=False)
        value = float(valid_loss.detach())
        if not np.isfinite(value):
            raise TrainingError(f"readout fit diverged (validation loss {value})")
        if best is None or value < best[0]:
            errors = {
                "RMSE E / meV / atom": 1000.0 * (sums["se_e_atom"] / sums["n_e"]) ** 0.5,
                "RMSE F / meV / A": 1000.0 * (sums["se_f"] / sums["n_f"]) ** 0.5,
            }
            state = {k: v.detach().clone() for k, v in model.readouts.state_dict().items()}
            best = (value, state, errors)
    assert best is not None
    return best[1], best[2]


def _start_readouts(model: Any, start: Path | None, seed: int, device: str) -> str:
    """Put the starting readouts into ``model``; returns where they came from."""
    import torch

    if start is not None and Path(start).is_file():
        previous = torch.load(start, map_location=device, weights_only=False)
        state = previous.readouts.state_dict()
        own = model.readouts.state_dict()
        if state.keys() == own.keys() and all(state[k].shape == own[k].shape for k in own):
            model.readouts.load_state_dict({k: v.to(own[k]) for k, v in state.items()})
            return str(start)
        logger.info("readouts of %s do not fit member 0's body: drawn anew", start)
    reinitialise_readouts(model, seed)
    return f"seed {seed}"


def _fit_readouts(
    model: Any,
    frames: Sequence[Atoms],
    training: TrainingConfig,
    seed: int,
    device: str,
    start_readouts: Path | None,
) -> tuple[str, np.ndarray, np.ndarray, dict[str, float]]:
    """Fit ``model``'s readouts with everything else frozen; keep the best-validation ones.

    Returns where the readouts started from, the split and the validation errors.
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    started_from = _start_readouts(model, start_readouts, seed, device)
    for parameter in model.readouts.parameters():
        parameter.requires_grad_(True)
    graphs = _labelled_graphs(frames, model, device)
    train_idx, valid_idx = split_frames(len(graphs), training.valid_fraction, seed)
    train = [graphs[i] for i in train_idx]
    valid = [graphs[i] for i in valid_idx]
    state, errors = _epochs(model, train, valid, training, device, seed)
    model.readouts.load_state_dict(state)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return started_from, train_idx, valid_idx, errors


def train_readouts(
    frames: Sequence[Atoms],
    *,
    base_model: Path,
    training: TrainingConfig,
    seed: int,
    workdir: Path,
    device: str = "cpu",
    threads: int = 1,
    name: str = "member",
    start_readouts: Path | None = None,
) -> TrainedMember:
    """Fit readouts on member 0's frozen body and write the member's ``.model`` file.

    Parameters
    ----------
    frames
        Labeled frames (SinglePointCalculator with energy, forces, maybe stress).
    base_model
        Member 0's ``.model`` file of the same iteration.
    training
        Epochs, batch size, lr, loss weights, validation fraction, dtype.
    seed
        Seeds the readouts' initialisation, the split and the batch order.
    workdir
        Where ``<name>.model`` is written (created).
    device, threads
        torch device and intra-op threads of the fit.
    name
        Model name.
    start_readouts
        A model whose readouts the fit starts from (this member's of the
        previous iteration, ``restart: continue``); None, or readouts of
        another shape: drawn anew from ``seed``.

    Returns
    -------
    TrainedMember
        ``hyperparameters["shared_body_of"]`` names the base model file.

    Raises
    ------
    TrainingError
        Too few or unlabeled frames, an unreadable base model, or a diverged fit.
    """
    import torch

    start_s = time.perf_counter()
    if len(frames) < 2:
        raise TrainingError(f"need at least 2 labeled frames, got {len(frames)}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    saved_dtype, saved_threads = torch.get_default_dtype(), torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        model = _load_base(Path(base_model), device, training.dtype)
        torch.set_default_dtype(next(model.parameters()).dtype)
        started_from, train_idx, valid_idx, errors = _fit_readouts(
            model, frames, training, seed, device, start_readouts
        )
        model_path = workdir / f"{name}.model"
        torch.save(model.to("cpu"), model_path)
    finally:
        torch.set_default_dtype(saved_dtype)
        torch.set_num_threads(saved_threads)
    hyperparameters = {
        "training": training.model_dump(mode="json"),
        "seed": seed,
        "n_train": len(train_idx),
        "n_valid": len(valid_idx),
        "valid_indices": [int(i) for i in valid_idx],
        "shared_body_of": str(base_model),
        "readouts_from": started_from,
        "fit": "readouts only (alflow.committee.readout_fit), body frozen, no EMA",
        "device": device,
        "threads": threads,
        "valid_errors": errors,
    }
    wall_s = time.perf_counter() - start_s
    logger.info(
        "readouts of %s fitted in %.1f s: valid RMSE F %.1f meV/Å",
        name,
        wall_s,
        errors["RMSE F / meV / A"],
    )
    return TrainedMember(
        model_path=model_path,
        seed=seed,
        n_train=len(train_idx),
        n_valid=len(valid_idx),
        valid_rmse_energy_meV_atom=errors["RMSE E / meV / atom"],
        valid_rmse_forces_meV_A=errors["RMSE F / meV / A"],
        wall_s=wall_s,
        hyperparameters=hyperparameters,
    )
