"""What the step tests share: a campaign's StepContext on a test store, explored frames, benchmarks.

Plain functions (imported by the tests that need them), beside the fixtures of conftest.py.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ase import Atoms

from alflow.config import CampaignConfig
from alflow.settings import Settings
from alflow.steps.context import StepContext
from alflow.structures import structure_key

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def make_ctx(
    store: Any,
    tmp_path: Path,
    campaign: str,
    selection: dict[str, Any] | None = None,
    loop: dict[str, Any] | None = None,
) -> StepContext:
    """A one-element Cu campaign registered in ``store``, with these selection/loop keys."""
    config = CampaignConfig.model_validate(
        {
            "name": campaign,
            "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]},
            "selection": selection or {},
            "loop": {"max_iterations": 5, "max_dft_labels": 100, **(loop or {})},
        }
    )
    store.register_campaign(config)
    return StepContext(store=store, config=config, settings=Settings(), workdir=tmp_path)


def store_explored(
    ctx: StepContext, iteration: int, atoms_list: list[Atoms], committee: Any
) -> list[str]:
    """Store ``atoms_list`` as walker 0's explored frames, scored by ``committee``; their keys."""
    keys, extras = [], []
    for atoms in atoms_list:
        probe = atoms.copy()
        probe.calc = committee
        forces = probe.get_forces()
        keys.append(structure_key(atoms))
        extras.append(
            {
                "uncertainty": {"max_force_dev_eV_A": probe.calc.results["max_force_dev"]},
                "committee": {
                    "energy_eV": probe.get_potential_energy(),
                    "forces_eV_A": forces.tolist(),
                },
            }
        )
    ctx.store.add_structures(
        ctx.config.name,
        atoms_list,
        keys,
        iteration=iteration,
        status="explored",
        origins=[{"kind": "walker", "iteration": iteration, "walker": 0}] * len(keys),
        extras=extras,
    )
    return keys


@contextmanager
def benchmark_module(name: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py`` as a module (the folder is no package), unregistered after."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
