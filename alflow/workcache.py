"""Results cached in a launch directory, keyed by a fingerprint of their inputs.

A step that finds a result of identical inputs in its directory reuses it.
This makes a rerun after ``kill -9`` (or ``lpad detect_lostruns --rerun``)
cheap: the Firework reruns in the same launch directory and finds its
result. The files are written by alflow itself
(pickle) and never exchanged between machines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["fingerprint", "load_cached", "save_cached", "sha256_file", "write_json_atomically"]

log = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-able parts (bytes are hashed as they are)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            digest.update(part)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB blocks (the one file hash of alflow)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_cached(path: Path, key: str) -> Any | None:
    """The value saved at ``path`` under ``key``, or None (missing, other inputs, unreadable)."""
    try:
        with open(path, "rb") as handle:
            record = pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != key:
        return None
    log.info("reusing %s (same inputs)", path)
    return record["value"]


def save_cached(path: Path, key: str, value: Any) -> None:
    """Save ``value`` under ``key`` atomically (temporary file, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        pickle.dump({"fingerprint": key, "value": value}, handle)
    os.replace(tmp, path)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename.

    A reader (or a rerun after ``kill -9``) sees the old file or the whole new
    one, never half of it. Values JSON cannot hold are written as strings.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
