"""benchmarks/store.py in its tiny mode: it runs end to end and ends with one JSON object."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "store.py"

pytestmark = pytest.mark.skipif(
    shutil.which("secantusd-py") is None, reason="needs secantusd-py (pip install secantusdb)"
)


def test_tiny_run_prints_the_figures_as_one_json_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALFLOW_")}
    command = [sys.executable, str(SCRIPT), "--sizes", "500", "--repeats", "1"]
    command += ["--fireworks", "2", "--walkers", "1", "--frames", "10", "--no-cli"]
    command += ["--workdir", str(tmp_path / "work")]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert len(lines) > 10  # the human-readable lines come first

    for key in (
        "open_s_500",
        "find_s_500",
        "stats_s_500",
        "walker_frames_per_s_500",
        "find_one_and_update_s_500",
        "count_s_500",
        "select_store_s_500",
        "collect_store_s_500",
        "engine_s_per_firework",
        "engine_overhead_fraction",
    ):
        assert isinstance(result[key], float) and result[key] > 0, key
    row = result["sizes"]["500"]
    assert row["n_structures"] == 500
    assert row["n_labels"] > 0
    assert all(f["rows"] > 0 for name, f in row["queries"]["find"].items() if "2.5" not in name)
    engine = result["engine"]["launchpads"]["0"]
    assert engine["alflow_firework_ran"] == 2 and engine["fireworks_only_ran"] == 2
    assert engine["states"] == {"COMPLETED": 4}
    if "skipped" not in result["mongomock"]:  # mongomock installed: the old store beside it
        assert result["mongomock_open_s_500"] > 0
        assert result["mongomock_save_s_per_firework_500"] > 0
    # the benchmark stops the server it started
    assert not (tmp_path / "work" / "store" / "server.json").exists()
