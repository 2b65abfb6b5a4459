"""Results cached by input fingerprint in a launch directory."""

from __future__ import annotations

from pathlib import Path

from alflow.workcache import fingerprint, load_cached, save_cached


def test_same_inputs_reuse_other_inputs_recompute(tmp_path: Path) -> None:
    path = tmp_path / "result.pkl"
    key = fingerprint(b"frames", ["--seed", "1"], {"a": 1})
    assert load_cached(path, key) is None
    save_cached(path, key, {"energy_eV": -3.5})
    assert load_cached(path, key) == {"energy_eV": -3.5}
    assert load_cached(path, fingerprint(b"frames", ["--seed", "2"], {"a": 1})) is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_fingerprint_is_order_sensitive_and_stable() -> None:
    assert fingerprint(1, 2) == fingerprint(1, 2)
    assert fingerprint(1, 2) != fingerprint(2, 1)
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "result.pkl"
    path.write_bytes(b"not a pickle")
    assert load_cached(path, "k") is None
