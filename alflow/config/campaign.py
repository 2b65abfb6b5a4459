"""The whole campaign configuration and its stable hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from alflow.config.base import Strict
from alflow.config.committee import CommitteeConfig
from alflow.config.ending import FinalFitConfig, LoopConfig, ValidationConfig
from alflow.config.exploration import ExplorationConfig
from alflow.config.initial import InitialConfig
from alflow.config.labeling import LabelingConfig
from alflow.config.selection import SelectionConfig

__all__ = ["CampaignConfig", "config_hash"]


class CampaignConfig(Strict):
    """Everything a campaign computes. Stored with every result."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    description: str = ""
    initial: InitialConfig
    committee: CommitteeConfig = CommitteeConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    selection: SelectionConfig = SelectionConfig()
    labeling: LabelingConfig = LabelingConfig()
    loop: LoopConfig = LoopConfig()
    final: FinalFitConfig = FinalFitConfig()
    validation: ValidationConfig = ValidationConfig()
    base_dir: str = Field(
        default=".",
        description="Directory that relative paths refer to (set by load_campaign).",
    )


def config_hash(config: BaseModel | dict[str, Any]) -> str:
    """Return a short, stable sha256 of a configuration or parameter dict.

    Parameters
    ----------
    config
        A pydantic model or a JSON-serialisable dict.

    Returns
    -------
    str
        First 16 hex digits of the sha256 of the canonical JSON.
    """
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
