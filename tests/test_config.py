"""Campaign files: strict validation with errors that name the key and the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from alflow.config import CampaignConfig, config_hash, load_campaign
from alflow.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("name", ["quickstart-emt.yaml", "al-gpaw.yaml"])
def test_shipped_campaigns_validate(name: str) -> None:
    config = load_campaign(REPO / "workflows" / name)
    assert config.loop.max_iterations >= 3
    assert config.base_dir == str((REPO / "workflows").resolve())


def test_unknown_key_names_key_file_and_suggests_unit(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: t
        initial: {structures: [{kind: bulk, symbol: Cu}]}
        exploration: {timestep: 1.0}
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_campaign(path)
    message = str(err.value)
    assert str(path) in message
    assert "exploration.timestep" in message
    assert "timestep_fs" in message


def test_wrong_type_and_window(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: t
        initial: {structures: [{kind: bulk, symbol: Cu}]}
        exploration: {steps: many}
        selection: {trust_lo_eV_A: 0.5, trust_hi_eV_A: 0.1}
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_campaign(path)
    assert "exploration.steps" in str(err.value)
    assert "trust_hi_eV_A must be larger" in str(err.value)


def test_broken_yaml_gives_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\ninitial: [\n")
    with pytest.raises(ConfigError, match=r"line \d+.*invalid YAML"):
        load_campaign(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read campaign file"):
        load_campaign("/nonexistent/campaign.yaml")


def test_config_is_immutable_and_hash_stable() -> None:
    data = {"name": "a", "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}}
    one, two = CampaignConfig.model_validate(data), CampaignConfig.model_validate(data)
    assert config_hash(one) == config_hash(two)
    with pytest.raises(ValidationError):
        one.name = "b"  # type: ignore[misc]
