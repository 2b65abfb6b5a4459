"""Bad input to `alflow run`: a one-line error naming the problem, exit ≠ 0, nothing written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CASES = {
    "broken-yaml": ("name: x\ninitial: [\n", "invalid YAML"),
    "unknown-key": (
        "name: x\ninitial: {structures: [{kind: bulk, symbol: Cu}]}\nloop: {max_iter: 3}\n",
        "loop.max_iter: unknown key (did you mean 'max_iterations'?)",
    ),
    "unknown-element-for-emt": (
        "name: x\ninitial: {structures: [{kind: bulk, symbol: Si, crystalstructure: diamond, a_A: 5.43}]}\n",
        "EMT has no parameters for Si",
    ),
    "not-an-element": (
        "name: x\ninitial: {structures: [{kind: bulk, symbol: Xx, crystalstructure: fcc, a_A: 4.0}]}\n",
        "Xx",
    ),
    "missing-structure-file": (
        "name: x\ninitial: {structures: [{kind: file, path: nowhere.xyz}]}\n",
        "structure file not found",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_campaign_is_a_one_line_error_and_writes_nothing(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(textwrap.dedent(text))
    store = tmp_path / "alflow-store"
    result = subprocess.run(
        [sys.executable, "-m", "alflow.cli", "run", str(campaign), "--store", str(store)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("alflow: error:")]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not store.exists()
    assert not (tmp_path / "alflow-scratch").exists()


def test_nan_in_structure_file(tmp_path: Path) -> None:
    xyz = tmp_path / "bad.xyz"
    xyz.write_text(
        '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"\nCu 0 0 0\nCu nan 1 1\n'
    )
    campaign = tmp_path / "c.yaml"
    campaign.write_text("name: x\ninitial: {structures: [{kind: file, path: bad.xyz}]}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alflow.cli",
            "run",
            str(campaign),
            "--store",
            str(tmp_path / "alflow-store"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "non-finite" in result.stderr
    assert not (tmp_path / "alflow-store").exists()


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("mongodb://127.0.0.1:9/", "cannot reach MongoDB at mongodb://127.0.0.1:9/"),
        ("mongodb://u:pw@[bad", "invalid MongoDB URI"),
        ("old.bson", "alflow server import"),
    ],
)
def test_store_that_cannot_open_is_a_one_line_error(
    tmp_path: Path, store: str, expected: str
) -> None:
    campaign = tmp_path / "c.yaml"
    campaign.write_text("name: x\ninitial: {structures: [{kind: bulk, symbol: Cu}]}\n")
    result = subprocess.run(
        [sys.executable, "-m", "alflow.cli", "run", str(campaign), "--store", store],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("alflow: error:") and expected in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and "pw" not in result.stderr
