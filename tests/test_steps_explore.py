"""The explore step refuses to run a walker without a committee of at least two members."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alflow.config import CampaignConfig
from alflow.errors import ExplorationError
from alflow.settings import Settings
from alflow.steps.context import StepContext
from alflow.steps.explore import explore_walker


def test_walker_needs_two_trained_members(tmp_path: Path, store: Any) -> None:
    config = CampaignConfig.model_validate(
        {"name": "c", "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}}
    )
    store.register_campaign(config)
    model = tmp_path / "m.model"
    model.write_bytes(b"weights")
    store.put_model("c", 0, 0, model, {"seed": 0})
    store.record_failed_model("c", 0, 1, "diverged twice", {"seed": 1})
    ctx = StepContext(store=store, config=config, settings=Settings(), workdir=tmp_path)
    with pytest.raises(ExplorationError, match="1 trained committee members, at least 2"):
        explore_walker(ctx, 0, 0)
