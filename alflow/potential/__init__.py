"""The potential a campaign hands its user: load, export, model card."""

from __future__ import annotations

from alflow.potential.export import ExportError, ExportResult, export_potential
from alflow.potential.exported import load_exported
from alflow.potential.load import final_record, load_potential

__all__ = [
    "ExportError",
    "ExportResult",
    "export_potential",
    "final_record",
    "load_exported",
    "load_potential",
]
