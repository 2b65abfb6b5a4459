"""Query the database of computed structures: filters, a Python API, exports, ``alflow db``.

Names are imported lazily, so ``alflow`` (which registers ``alflow db``) starts
without loading ASE or pymatgen.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "EXPORT_FORMATS",
    "Database",
    "StructureQuery",
    "connect_reader",
    "export_atoms",
    "open_database",
    "parse_formula",
    "parse_range",
]

_WHERE = {
    "Database": "api",
    "connect_reader": "api",
    "open_database": "api",
    "EXPORT_FORMATS": "export",
    "export_atoms": "export",
    "StructureQuery": "filters",
    "parse_formula": "filters",
    "parse_range": "filters",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"alflow.query.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'alflow.query' has no attribute '{name}'")
