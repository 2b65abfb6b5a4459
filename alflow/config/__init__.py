"""What a campaign computes: the strict, immutable campaign configuration.

A campaign file is YAML. Every key is checked: an unknown key, a value of the
wrong type or a quantity without its unit in the name (``timestep`` instead of
``timestep_fs``) is a :class:`~alflow.errors.ConfigError` that names the key
and the file. The validated configuration is stored with every result, so a
result can always be traced to the exact settings that produced it.

One module per group of sections, every name re-exported here:

- :mod:`alflow.config.base`: ``Strict``, the base of every model;
- :mod:`alflow.config.initial`: ``initial`` (structures, seed set, short range);
- :mod:`alflow.config.committee`: ``committee`` (MACE model, training);
- :mod:`alflow.config.exploration`: ``exploration`` (the MD walkers);
- :mod:`alflow.config.selection`: ``selection`` (trust window, sanity);
- :mod:`alflow.config.labeling`: ``labeling`` (the oracle, queue resources);
- :mod:`alflow.config.ending`: ``loop``, ``final`` and ``validation``;
- :mod:`alflow.config.campaign`: ``CampaignConfig`` and ``config_hash``;
- :mod:`alflow.config.loader`: ``load_campaign`` and ``validate_campaign``.

Examples
--------
>>> from alflow.config import CampaignConfig
>>> cfg = CampaignConfig.model_validate(
...     {"name": "demo", "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}}
... )
>>> cfg.labeling.oracle.code
'emt'
"""

from __future__ import annotations

from alflow.config.base import Strict
from alflow.config.campaign import CampaignConfig, config_hash
from alflow.config.committee import CommitteeConfig, MaceModelConfig, TrainingConfig
from alflow.config.ending import FinalFitConfig, LoopConfig, ValidationConfig
from alflow.config.exploration import ExplorationConfig
from alflow.config.initial import (
    BulkStructure,
    FileStructure,
    InitialConfig,
    ShortRangeConfig,
    StructureSpec,
)
from alflow.config.labeling import (
    EMTOracle,
    GPAWOracle,
    LabelingConfig,
    OracleSpec,
    QueueResources,
)
from alflow.config.loader import load_campaign, validate_campaign
from alflow.config.selection import SanityConfig, SelectionConfig

__all__ = [
    "BulkStructure",
    "CampaignConfig",
    "CommitteeConfig",
    "EMTOracle",
    "ExplorationConfig",
    "FileStructure",
    "FinalFitConfig",
    "GPAWOracle",
    "InitialConfig",
    "LabelingConfig",
    "LoopConfig",
    "MaceModelConfig",
    "OracleSpec",
    "QueueResources",
    "SanityConfig",
    "SelectionConfig",
    "ShortRangeConfig",
    "Strict",
    "StructureSpec",
    "TrainingConfig",
    "ValidationConfig",
    "config_hash",
    "load_campaign",
    "validate_campaign",
]
