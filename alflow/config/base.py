"""The base of every configuration model: unknown keys forbidden, immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Strict"]


class Strict(BaseModel):
    """Base of all configuration models: unknown keys forbidden, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
