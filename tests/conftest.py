"""Shared fixtures: one real MongoDB-wire server for the session, a fresh database per test.

The server is the local one alflow itself starts (``secantusd-py`` from PyPI
``secantusdb``), in a temporary store directory, the way the Slurm tests
start their one-node Slurm. With ``ALFLOW_TEST_MONGODB_URI`` set, the same
tests run against that server instead (a site's ``mongod``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``mongodb://`` URI of the test server (started once per session)."""
    uri = os.environ.get("ALFLOW_TEST_MONGODB_URI")
    if uri:
        yield uri
        return
    from alflow.store.server import ensure_server, stop_server

    store_dir = tmp_path_factory.mktemp("server") / "alflow-store"
    server = ensure_server(store_dir)
    yield server.uri
    stop_server(store_dir)


@pytest.fixture
def db_names(mongo_uri: str) -> Iterator[dict[str, str]]:
    """Fresh database names for this test (alflow's and the LaunchPad's), dropped after it."""
    import pymongo

    tag = uuid.uuid4().hex[:10]
    names = {"store_name": f"alflow_{tag}", "launchpad_name": f"fw_{tag}"}
    yield names
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_uri)
    for name in names.values():
        client.drop_database(name)
    client.close()


@pytest.fixture
def server_settings(mongo_uri: str, db_names: dict[str, str], tmp_path: Path) -> Any:
    """Settings on the test server with this test's own databases and scratch directory."""
    from alflow.settings import Settings

    return Settings(store=mongo_uri, scratch_dir=str(tmp_path / "scratch"), **db_names)


@pytest.fixture
def store(server_settings: Any) -> Any:
    """alflow's Store on a fresh database of the test server (indexes created)."""
    from alflow.store import open_store

    _, data = open_store(server_settings.store, db_name=server_settings.store_name)
    return data


@pytest.fixture
def new_store(mongo_uri: str) -> Iterator[Any]:
    """A factory of Stores, each on a fresh database of the test server (all dropped after)."""
    from alflow.store import open_store

    names: list[str] = []

    def make() -> Any:
        names.append(f"alflow_{uuid.uuid4().hex[:10]}")
        return open_store(mongo_uri, db_name=names[-1])[1]

    yield make
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(mongo_uri)
    for name in names:
        client.drop_database(name)
    client.close()
