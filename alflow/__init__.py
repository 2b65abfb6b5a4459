"""alflow: active learning of MACE potentials with DFT labels (FireWorks + MongoDB).

``alflow.load_potential(store, campaign)`` returns a campaign's final
committee as an ASE calculator; the package imports nothing heavy until used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_potential"]


def __getattr__(name: str) -> Any:
    if name == "load_potential":
        # lazy: every ``import alflow.X`` runs this file; alflow.potential pulls in
        # ase, pymongo and alflow.committee
        from alflow.potential import load_potential

        return load_potential
    raise AttributeError(f"module 'alflow' has no attribute {name!r}")
