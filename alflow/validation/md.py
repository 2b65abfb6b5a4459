"""MD stability: a long committee-mean run at the campaign's hottest temperature.

The largest initial cell, repeated to at least ``md_min_atoms``, runs
Langevin MD (:class:`ase.md.langevin.Langevin`, through
:func:`alflow.exploration.walker.run_walker`) driven by the committee mean
for ``md_time_ps``. It counts as stable when it ran to the end, no pair came
closer than the training data's shortest distance for that pair (minus a
tolerance), and the mean temperature of its last half stayed near the
target. It stops early on a blow-up (atoms too close, the temperature over
``exploration.max_temperature_factor`` × the target, non-finite values).
The fraction of sampled frames inside the trust window says how much of
this run the committee itself vouches for.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from alflow.errors import ExplorationError
from alflow.selection import score_frames
from alflow.structures import shortest_pair_distances_A
from alflow.validation.common import ValidationRun, repeat_to

__all__ = ["check_md_stability", "progress_logger", "run_committee_md"]

log = logging.getLogger(__name__)

#: The trace kept for the figure has at most this many points.
TRACE_POINTS = 400


def progress_logger(label: str, every_fraction: float = 0.1) -> Any:
    """A ``progress(step, steps)`` callback that logs about every 10 % of the run."""
    state = {"next": every_fraction}

    def progress(step: int, steps: int) -> None:
        if steps and step / steps >= state["next"] - 1e-9:
            log.info("%s: step %d of %d (%.0f %%)", label, step, steps, 100.0 * step / steps)
            while state["next"] <= step / steps + 1e-9:
                state["next"] += every_fraction

    return progress


def run_committee_md(
    run: ValidationRun,
    atoms: Any,
    *,
    temperature_K: float,
    steps: int,
    sample_interval_steps: int,
    seed: int,
    label: str,
) -> Any:
    """Langevin MD with the committee mean; stops only on a blow-up.

    The uncertainty never stops it; two atoms closer than the data's
    shortest distance minus ``md_distance_tolerance_A``, a temperature over
    ``exploration.max_temperature_factor`` × the target or non-finite
    values do.

    Returns
    -------
    alflow.exploration.walker.WalkerResult
    """
    # lazy: alflow.exploration imports ase.md, which loads scipy.optimize and gpaw
    # (about 1 s); alflow.validation is imported by every ``alflow`` command
    from alflow.exploration.walker import run_walker

    exploration = run.ctx.config.exploration
    return run_walker(
        atoms,
        run.calc,
        temperature_K=temperature_K,
        steps=steps,
        timestep_fs=exploration.timestep_fs,
        sample_interval_steps=sample_interval_steps,
        seed=seed,
        trust_hi_eV_A=math.inf,
        min_distance_A=max(blow_up_distance_A(run), 0.0),
        max_temperature_factor=exploration.max_temperature_factor,
        friction_per_fs=exploration.friction_per_fs,
        progress=progress_logger(label),
    )


def blow_up_distance_A(run: ValidationRun) -> float:
    """Closest distance (Å) any pair may reach: the data's shortest minus the tolerance."""
    shortest = run.shortest_training_distances_A()
    if not shortest:
        return 0.0
    return min(shortest.values()) - run.config.md_distance_tolerance_A


def _closest_pairs(run: ValidationRun, frames: list[Any]) -> dict[str, dict[str, Any]]:
    """Per pair: the closest distance seen, the data's shortest and whether it stayed physical."""
    data = run.shortest_training_distances_A()
    tolerance_A = run.config.md_distance_tolerance_A
    # pairs farther apart than every limit cannot fail: a short cutoff keeps this cheap
    cutoff_A = min(run.r_max_A, max(data.values()) + 0.5) if data else run.r_max_A
    seen = shortest_pair_distances_A([f.atoms for f in frames], cutoff_A=cutoff_A)
    out = {}
    for pair in sorted(set(seen) | set(data)):
        closest = seen.get(pair)
        limit = data.get(pair)
        physical = closest is None or limit is None or closest >= limit - tolerance_A
        out["-".join(pair)] = {
            "closest_A": closest,
            "training_shortest_A": limit,
            "physical": bool(physical),
        }
    return out


def _trace(frames: list[Any]) -> dict[str, list[float]]:
    """Time, temperature and max force deviation of the frames, thinned for a figure."""
    stride = max(1, math.ceil(len(frames) / TRACE_POINTS))
    kept = frames[::stride]
    return {
        "time_ps": [f.time_fs / 1000.0 for f in kept],
        "temperature_K": [f.temperature_K for f in kept],
        "max_force_dev_eV_A": [f.max_force_dev_eV_A for f in kept],
    }


def _in_window(run: ValidationRun, frames: list[Any], trust_hi: float) -> float | None:
    """Fraction of frames whose selection score is at most ``trust_hi``."""
    if not frames:
        return None
    scores = score_frames(
        np.array([f.max_force_dev_eV_A for f in frames]),
        [f.forces_eV_A for f in frames],
        run.ctx.config.selection,
    )
    return float(np.mean(scores <= trust_hi))


def _temperature_verdict(
    run: ValidationRun, frames: list[Any], target_K: float
) -> tuple[float | None, bool]:
    """Mean temperature of the last half of the frames and whether it is near the target."""
    half = [f.temperature_K for f in frames[len(frames) // 2 :]]
    if not half:
        return None, False
    mean_K = float(np.mean(half))
    factor = run.config.md_temperature_factor
    return mean_K, bool(target_K / factor <= mean_K <= target_K * factor)


def check_md_stability(run: ValidationRun) -> dict[str, Any]:
    """Run the stability MD and judge it (see the module docstring).

    Returns
    -------
    dict
        ``temperature_K``, ``n_atoms``, ``steps``, ``steps_done``,
        ``simulated_ps``, ``wall_s``, ``steps_per_s``, ``stop_reason``,
        ``stable`` and why (``physical``, ``temperature_ok``,
        ``mean_temperature_last_half_K``), ``pairs`` (closest seen per pair),
        ``closest_distance_A``, ``trust_hi``, ``in_window_fraction``,
        ``max_force_dev_eV_A`` (mean, max) and a thinned ``trace``.
    """
    config, exploration = run.config, run.ctx.config.exploration
    target_K = float(max(exploration.temperatures_K))
    atoms, repeats = repeat_to(run.largest_structure().atoms, config.md_min_atoms)
    steps = max(1, round(config.md_time_ps * 1000.0 / exploration.timestep_fs))
    label = f"stability MD at {target_K:g} K, {len(atoms)} atoms"
    log.info("%s: %d steps of %g fs", label, steps, exploration.timestep_fs)
    result: dict[str, Any] = {
        "temperature_K": target_K,
        "n_atoms": len(atoms),
        "repeats": repeats,
        "steps": steps,
        "timestep_fs": exploration.timestep_fs,
        "seed": config.seed,
    }
    try:
        walk = run_committee_md(
            run,
            atoms,
            temperature_K=target_K,
            steps=steps,
            sample_interval_steps=exploration.sample_interval_steps,
            seed=config.seed,
            label=label,
        )
    except ExplorationError as exc:
        log.warning("%s failed: %s", label, exc)
        return {**result, "stable": False, "stop_reason": str(exc), "steps_done": 0}
    return {**result, **_judge(run, walk, target_K)}


def _judge(run: ValidationRun, walk: Any, target_K: float) -> dict[str, Any]:
    """The figures and the verdict of a finished stability run."""
    frames = walk.frames
    pairs = _closest_pairs(run, frames)
    physical = all(p["physical"] for p in pairs.values())
    mean_K, temperature_ok = _temperature_verdict(run, frames, target_K)
    trust_hi = run.trust_hi()
    closest = [p["closest_A"] for p in pairs.values() if p["closest_A"] is not None]
    deviations = np.array([f.max_force_dev_eV_A for f in frames])
    stable = walk.stop_reason is None and physical and temperature_ok
    timestep_fs = run.ctx.config.exploration.timestep_fs
    figures = {
        "steps_done": walk.steps_done,
        "simulated_ps": walk.steps_done * timestep_fs / 1000.0,
        "wall_s": walk.wall_s,
        "steps_per_s": walk.steps_done / walk.wall_s if walk.wall_s > 0 else None,
        "stop_reason": walk.stop_reason,
        "stable": bool(stable),
        "physical": bool(physical),
        "temperature_ok": temperature_ok,
        "mean_temperature_last_half_K": mean_K,
        "pairs": pairs,
        "closest_distance_A": min(closest) if closest else None,
        "trust_hi": trust_hi,
        "n_frames": len(frames),
        "in_window_fraction": _in_window(run, frames, trust_hi),
        "max_force_dev_eV_A": {
            "mean": float(deviations.mean()) if len(deviations) else None,
            "max": float(deviations.max()) if len(deviations) else None,
        },
        "trace": _trace(frames),
    }
    log.info(
        "stability MD: %.2f ps in %.0f s (%.1f steps/s), stable %s%s, %.0f %% in the trust window",
        figures["simulated_ps"],
        walk.wall_s,
        figures["steps_per_s"] or 0.0,
        stable,
        f" ({walk.stop_reason})" if walk.stop_reason else "",
        100.0 * (figures["in_window_fraction"] or 0.0),
    )
    return figures
