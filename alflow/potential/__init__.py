"""The potential a campaign hands its user: load, export, model card."""

from __future__ import annotations

from alflow.potential.load import final_record, load_potential

__all__ = ["final_record", "load_potential"]
