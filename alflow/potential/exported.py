"""Read an exported potential back: the card, its sha256-checked models, the committee."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alflow.committee import load_committee
from alflow.errors import TrainingError
from alflow.potential.export import CARD_JSON, ExportError
from alflow.workcache import sha256_file

__all__ = ["load_exported", "read_card", "verified_model_paths"]


def read_card(directory: str | Path) -> dict[str, Any]:
    """The model card of an export directory.

    Raises
    ------
    ExportError
        No readable ``model_card.json`` there.
    """
    path = Path(directory) / CARD_JSON
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(
            f"{Path(directory)} is not an exported potential (no {CARD_JSON}): "
            "write one with 'alflow model export'"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc


def verified_model_paths(directory: str | Path) -> list[Path]:
    """The exported model files, each checked against the card's sha256.

    Raises
    ------
    ExportError
        No model card.
    TrainingError
        A model file is missing or its sha256 differs from the card's.
    """
    root = Path(directory)
    card = read_card(root)
    paths = []
    for member in card["members"]:
        name = member["file"]
        path = root / name
        if not path.is_file():
            raise TrainingError(f"exported model {path} is missing")
        expected = card["files"][name]["sha256"]
        actual = sha256_file(path)
        if actual != expected:
            raise TrainingError(
                f"exported model {path} has sha256 {actual[:12]}… but {CARD_JSON} records "
                f"{expected[:12]}…: refusing a tampered or corrupt file"
            )
        paths.append(path)
    return paths


def load_exported(directory: str | Path, device: str = "cpu", dtype: str | None = None) -> Any:
    """An exported potential as one committee calculator (sha256 of every model checked).

    Parameters
    ----------
    directory
        A directory written by :func:`export_potential` / ``alflow model export``.
    device
        torch device.
    dtype
        ``float32`` / ``float64``; default: the dtype the committee was trained in.

    Returns
    -------
    alflow.committee.CommitteeCalculator
        Its ``model_card`` attribute holds the card.

    Raises
    ------
    ExportError
        Not an export directory.
    TrainingError
        A model file is missing, tampered with or not loadable.
    """
    card = read_card(directory)
    paths = verified_model_paths(directory)
    dtype = dtype or card.get("potential", {}).get("dtype") or "float32"
    calc = load_committee(paths, device=device, dtype=dtype)
    calc.model_card = card
    return calc
