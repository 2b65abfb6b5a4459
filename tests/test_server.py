"""The local server of a store directory: start, reuse, kill -9, clear errors, old stores."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import bson
import pymongo
import pytest

from alflow.errors import StoreError
from alflow.store import connect, open_store
from alflow.store.server import ensure_server, read_record, release_server, stop_server


def _alflow(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "alflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_cli_start_reuse_launchpad_stop(tmp_path: Path) -> None:
    first = _alflow("server", "start", cwd=tmp_path)
    uri = first.stdout.strip().splitlines()[-1]
    assert uri.startswith("mongodb://127.0.0.1:")
    assert (tmp_path / "alflow-store" / "db").is_dir()
    again = _alflow("server", "start", cwd=tmp_path)
    assert again.stdout.strip().splitlines()[-1] == uri  # reused, not a second server
    client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    client.alflow.probe.insert_one({"x": 1})
    _alflow("server", "launchpad", "--out", "lp.yaml", cwd=tmp_path)
    pad = (tmp_path / "lp.yaml").read_text()
    assert uri in pad and "uri_mode: true" in pad
    wflows = subprocess.run(
        ["lpad", "-l", "lp.yaml", "get_wflows", "-d", "count"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wflows.returncode == 0 and wflows.stdout.strip().splitlines()[-1] == "0", wflows
    _alflow("server", "stop", cwd=tmp_path)
    assert read_record(tmp_path / "alflow-store") is None
    with pytest.raises(pymongo.errors.PyMongoError):
        client.admin.command("ping")
    client.close()


def test_server_killed_restarts_on_the_same_port_with_its_data(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    server = ensure_server(store_dir)
    client: pymongo.MongoClient = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=20000)
    client.alflow.labels.insert_many([{"i": i} for i in range(200)])  # acknowledged
    os.kill(server.pid, signal.SIGKILL)
    for _ in range(100):
        if read_record(store_dir) is None:
            break
        time.sleep(0.05)
    assert read_record(store_dir) is None
    again = ensure_server(store_dir)
    assert again.pid != server.pid and again.uri == server.uri  # clients keep their URI
    assert client.alflow.labels.count_documents({}) == 200  # the old client reconnects
    client.close()
    stop_server(store_dir)


def test_server_outlives_a_killed_owner_and_is_found_again(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    code = (
        "import os, time; from alflow.store.server import ensure_server; "
        f"s = ensure_server({str(store_dir)!r}); print(s.uri, flush=True); time.sleep(60)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    uri = owner.stdout.readline().strip()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    found = ensure_server(store_dir)  # no second server on the same data
    assert found.uri == uri
    release_server(store_dir)  # the last user (the owner is dead) stops it
    assert read_record(store_dir) is None


def test_last_user_stops_an_unpinned_server_and_a_pinned_one_stays(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    ensure_server(store_dir)
    release_server(store_dir)
    assert read_record(store_dir) is None
    ensure_server(store_dir, pin=True)
    release_server(store_dir)
    assert read_record(store_dir) is not None
    stop_server(store_dir)


def test_port_taken_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(StoreError, match=f"port {port} on 127.0.0.1 is taken"):
            ensure_server(tmp_path / "s", port=port)
        env = {**os.environ, "ALFLOW_SERVER_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "alflow.cli", "server", "start", "--store", "s"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "is taken" in result.stderr


def test_data_directory_of_another_server_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "s" / "db"
    data.mkdir(parents=True)
    (data / "storage.bson").write_bytes(b"\0")  # what a mongod data directory holds
    (data / "WiredTiger").write_text("WiredTiger\n")
    with pytest.raises(StoreError, match=r"is a mongod data directory.*ALFLOW_LOCAL_SERVER=mongod"):
        ensure_server(tmp_path / "s")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        ensure_server(tmp_path / "f")


def test_missing_mongod_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="'mongod' not found on PATH"):
        ensure_server(tmp_path / "s", program="mongod")


def _legacy_file(path: Path) -> None:
    """A one-file store as alflow 0.1 wrote it (header, then index and document records)."""
    records = [
        {"format": "alflow-embedded-store", "version": 1},
        {"db": "alflow", "coll": "labels", "indexes": {"_id_": {"key": [["_id", 1]]}}},
        *({"db": "alflow", "coll": "labels", "doc": {"structure_key": f"k{i}"}} for i in range(3)),
        {"db": "fireworks", "coll": "workflows", "doc": {"name": "old iteration 0"}},
    ]
    path.write_bytes(b"".join(bson.encode(r) for r in records))


def test_old_store_imports_once_and_is_refused_until_then(tmp_path: Path) -> None:
    old = tmp_path / "alflow-store.bson"
    _legacy_file(old)
    refused = _alflow("status", "--store", str(old), cwd=tmp_path, check=False)
    assert refused.returncode == 2
    assert f"alflow server import {old}" in refused.stderr
    done = _alflow("server", "import", str(old), "--store", "alflow-store", cwd=tmp_path)
    assert "imported" in done.stdout
    connection = connect(str(tmp_path / "alflow-store"))
    assert connection.client.alflow.labels.count_documents({}) == 3
    assert connection.client.fireworks.workflows.count_documents({}) == 1
    twice = _alflow(
        "server", "import", str(old), "--store", "alflow-store", cwd=tmp_path, check=False
    )
    assert twice.returncode == 2 and "imported already" in twice.stderr
    assert connection.client.alflow.labels.count_documents({}) == 3
    connection.client.close()
    release_server(tmp_path / "alflow-store")


def test_readers_in_other_processes_while_one_writes(tmp_path: Path) -> None:
    store_dir = tmp_path / "alflow-store"
    from alflow.config import CampaignConfig

    _, store = open_store(str(store_dir))
    config = {"name": "c", "initial": {"structures": [{"kind": "bulk", "symbol": "Cu"}]}}
    store.register_campaign(CampaignConfig.model_validate(config))
    status = _alflow("status", "--store", str(store_dir), "--json", cwd=tmp_path)
    assert json.loads(status.stdout)[0]["status"] == "running"
    assert "in use" not in status.stderr and "lock" not in status.stderr
    record = json.loads((store_dir / "server.json").read_text())
    assert read_record(store_dir) is not None and record["pid"] == read_record(store_dir).pid
    release_server(store_dir)
