"""Reading a campaign file: YAML, validation, one ConfigError line per invalid key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from alflow.config.campaign import CampaignConfig
from alflow.errors import ConfigError

__all__ = ["load_campaign", "validate_campaign"]


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields a location could have meant (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [
            a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        current = candidates[0] if candidates else None
    return list(getattr(current, "model_fields", {}) or [])


def _describe(error: dict[str, Any], source: str) -> str:
    """One line per validation error: file, dotted key and what is wrong."""
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "<top>"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        names = _field_names(CampaignConfig, loc)
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
        hint = [n for n in names if n.startswith(f"{loc[-1]}_")] or close
        message = "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else "")
    return f"{source}: {key}: {message}"


def validate_campaign(data: Any, source: str = "<campaign>") -> CampaignConfig:
    """Validate a campaign mapping and turn pydantic's errors into a ConfigError.

    Parameters
    ----------
    data
        The parsed YAML (a mapping).
    source
        Where it came from, for the messages.

    Returns
    -------
    CampaignConfig

    Raises
    ------
    ConfigError
        Listing every invalid key.
    """
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, source) for e in exc.errors()]
        raise ConfigError("; ".join(lines)) from None


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file.

    Parameters
    ----------
    path
        The campaign file. Relative structure paths inside it are relative to
        its directory.

    Returns
    -------
    CampaignConfig

    Raises
    ------
    ConfigError
        The file is missing, is not valid YAML, or has invalid keys.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read campaign file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if isinstance(data, dict) and "base_dir" not in data:
        data = {**data, "base_dir": str(path.resolve().parent)}
    return validate_campaign(data, str(path))
