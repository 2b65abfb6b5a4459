"""`alflow webgui`: FireWorks' GUI and the alflow pages in headless Chromium.

A writer holds the embedded store open (as `alflow run` would) while the GUI
runs in a subprocess: the GUI must show the campaign's workflows and figures,
pick up what the writer saves, and never write the store itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report import CAMPAIGN, CONFIG, PNG_MAGIC, build_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = Path(__file__).resolve().parents[1]
FIGURES = ("learning-curve", "uncertainty", "parity", "labels", "core-hours")


def _alflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "alflow.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def browse(url: str, profile: Path, *, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` after scripts and images loaded, from headless Chromium."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=4000",
    ]
    if screenshot is not None:
        command += ["--hide-scrollbars", "--window-size=1200,2400", f"--screenshot={screenshot}"]
    else:
        command += ["--dump-dom"]
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=60, cwd=profile.parent
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def fetch(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers.get_content_type(), response.read()


@pytest.fixture(scope="module")
def gui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The store with its writer still open, and `alflow webgui` serving it."""
    work = tmp_path_factory.mktemp("webgui")
    store = work / "store.bson"
    writer = build_store(store, close=False)  # holds the lock, like a running `alflow run`
    process = subprocess.Popen(
        _alflow("webgui", "--store", str(store), "--port", "0", "--refresh-s", "1"),
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(r"FireWorks GUI at (http://\S+/)", line)
        url = match.group(1) if match else None
    if url is None:
        process.kill()
        pytest.fail(f"webgui did not start: {process.communicate(timeout=10)}")
    try:
        yield {"url": url, "store": store, "writer": writer, "work": work, "process": process}
    finally:
        process.terminate()
        process.wait(timeout=20)
        writer.close()


@pytest.mark.browser
def test_fireworks_gui_shows_the_campaigns_workflows(gui: dict[str, Any]) -> None:
    home = browse(gui["url"], gui["work"] / "chrome-home")
    assert "demo iteration 0" in home
    for name, state in [
        ("demo it0 initial label seed-a", "COMPLETED"),
        ("demo E0s", "COMPLETED"),
        ("demo it0 train m0", "READY"),
        ("demo it0 md w0", "WAITING"),
    ]:
        assert re.search(rf'class="fw-link {state}"[^>]*title="{name}"', home), (name, state)
    assert 'href="/alflow/"' in home, "FireWorks pages link to the alflow pages"
    details = browse(gui["url"] + "wf/1", gui["work"] / "chrome-wf")
    assert "demo iteration 0" in details and "RUNNING" in details


@pytest.mark.browser
def test_alflow_page_shows_figures_and_iterations(gui: dict[str, Any]) -> None:
    base = gui["url"]
    index = browse(base + "alflow/", gui["work"] / "chrome-index")
    assert 'href="/alflow/demo/"' in index
    page = browse(base + f"alflow/{CAMPAIGN}/", gui["work"] / "chrome-page")
    assert "campaign demo" in page and "stopped" in page
    assert "demo iteration 0" in page and "RUNNING" in page
    assert len(re.findall(r'class="alflow-iteration"', page)) == 2
    assert "no held-out set" in page
    images = re.findall(r"<img[^>]*class=\"alflow-fig\"[^>]*>", page)
    assert len(images) == len(FIGURES)
    for name, tag in zip(FIGURES, images, strict=True):
        assert f'id="fig-{name}"' in tag
        loaded = re.search(r'data-loaded="(\d+)"', tag)
        assert loaded and int(loaded.group(1)) > 100, f"the browser did not load {name}: {tag}"
        src = re.search(r'src="([^"]+)"', tag).group(1).replace("&amp;", "&")
        status, kind, body = fetch(base.rstrip("/") + src)
        assert status == 200 and kind == "image/png" and body.startswith(PNG_MAGIC)
    browse(
        base + f"alflow/{CAMPAIGN}/",
        gui["work"] / "chrome-shot",
        screenshot=gui["work"] / "alflow-page.png",
    )
    assert (gui["work"] / "alflow-page.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.browser
def test_gui_never_writes_the_store(gui: dict[str, Any]) -> None:
    store: Path = gui["store"]
    before = (store.read_bytes(), store.stat().st_mtime_ns)
    base = gui["url"]
    browse(base, gui["work"] / "chrome-nowrite-1")
    browse(base + f"alflow/{CAMPAIGN}/", gui["work"] / "chrome-nowrite-2")
    for path in ("wf/1", "fw/5", "wf/metadata/campaign/demo/", "report/", "fw/READY/"):
        assert fetch(base + path)[0] == 200, path
    assert (store.read_bytes(), store.stat().st_mtime_ns) == before
    assert not list(store.parent.glob(f".{store.name}.*.tmp")), "no temporary save files"


@pytest.mark.browser
def test_gui_shows_what_the_writer_saves(gui: dict[str, Any]) -> None:
    from alflow.store import Connection, Store
    from alflow.workflow.builder import iteration_workflow
    from alflow.workflow.launchpad import open_launchpad

    base = gui["url"]
    version_url = base + f"alflow/{CAMPAIGN}/version"
    old_version = fetch(version_url)[2]
    writer = gui["writer"]
    connection = Connection(client=writer.client, store=str(gui["store"]), embedded=writer)
    launchpad = open_launchpad(connection)
    launchpad.add_wf(iteration_workflow(CONFIG, 1))
    Store(writer.client["alflow"]).put_iteration(
        CAMPAIGN, 2, {"iteration": 2, "errors": {"force_rmse_eV_A": 0.02}}
    )
    writer.save()
    assert fetch(version_url)[2] != old_version, "the page's version changes: it reloads"
    home = browse(base, gui["work"] / "chrome-live-1")
    assert "demo iteration 1" in home and "demo iteration 0" in home
    page = browse(base + f"alflow/{CAMPAIGN}/", gui["work"] / "chrome-live-2")
    assert "demo iteration 1" in page
    assert len(re.findall(r'class="alflow-iteration"', page)) == 3
    assert "0.0200" in page


def test_refuses_other_hosts_without_credentials(tmp_path: Path) -> None:
    result = subprocess.run(
        _alflow("webgui", "--store", str(tmp_path / "none.bson"), "--host", "0.0.0.0"),
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--username" in result.stderr and "--password" in result.stderr


def test_bind_rules() -> None:
    from alflow.errors import ConfigError
    from alflow.monitor.webgui import check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    check_bind("127.0.0.1", None, None)
    check_bind("0.0.0.0", "user", "secret")
    with pytest.raises(ConfigError):
        check_bind("0.0.0.0", None, None)
    with pytest.raises(ConfigError):
        check_bind("127.0.0.1", "user", None)


def test_basic_auth_covers_every_page(tmp_path: Path) -> None:
    import base64

    from alflow.monitor.live import LiveStore
    from alflow.monitor.webgui import create_app

    store = tmp_path / "store.bson"
    build_store(store)
    app = create_app(LiveStore(str(store)), username="ana", password="s3cret")
    client = app.test_client()
    pages = ["/", "/alflow/", f"/alflow/{CAMPAIGN}/", f"/alflow/{CAMPAIGN}/parity.png", "/wf/1"]
    pages.append("/reports/fireworks/days/2/fig.png")  # FireWorks leaves this one open
    good = {"Authorization": "Basic " + base64.b64encode(b"ana:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ana:wrong").decode()}
    for page in pages:
        assert client.get(page).status_code == 401, page
        assert client.get(page, headers=bad).status_code == 401, page
    for page in pages[:5]:
        assert client.get(page, headers=good).status_code == 200, page
    app.extensions["alflow"].username = app.extensions["alflow"].password = None
    app.config["WEBGUI_USERNAME"] = app.config["WEBGUI_PASSWORD"] = None


def test_live_server_fingerprint_changes_with_the_campaign(tmp_path: Path) -> None:
    """On a real server (no file to stat) the page version is a fingerprint of the state."""
    from alflow.monitor.live import Snapshot
    from alflow.monitor.pages import campaign_version
    from alflow.store import Connection, Store
    from alflow.workflow.launchpad import open_launchpad

    server = build_store(tmp_path / "store.bson")
    connection = Connection(client=server.client, store=str(server.path), embedded=server)
    store = Store(server.client["alflow"])
    snapshot = Snapshot(open_launchpad(connection), store, "live")
    first = campaign_version(snapshot, CAMPAIGN)
    assert campaign_version(snapshot, CAMPAIGN) == first
    store.put_iteration(CAMPAIGN, 2, {"iteration": 2})
    assert campaign_version(snapshot, CAMPAIGN) != first


@pytest.mark.mongodb
def test_webgui_on_a_mongodb_uri() -> None:
    uri = os.environ.get("ALFLOW_TEST_MONGODB_URI")
    if not uri:
        pytest.skip("set ALFLOW_TEST_MONGODB_URI to a MongoDB server to run this test")
    from test_report import fill_store

    from alflow.monitor.live import LiveStore
    from alflow.monitor.webgui import create_app
    from alflow.store import connect
    from alflow.store.store import Store
    from alflow.workflow.builder import iteration_workflow
    from alflow.workflow.launchpad import open_launchpad

    suffix = f"{os.getpid()}"
    store_name, lp_name = f"alflow_test_gui_{suffix}", f"fireworks_test_gui_{suffix}"
    connection = connect(uri)
    try:
        fill_store(Store(connection.client[store_name]))
        open_launchpad(connection, lp_name).add_wf(iteration_workflow(CONFIG, 0))
        live = LiveStore(uri, store_name=store_name, launchpad_name=lp_name)
        client = create_app(live).test_client()
        assert b"demo iteration 0" in client.get("/").data
        page = client.get(f"/alflow/{CAMPAIGN}/").data
        assert b"demo iteration 0" in page
        assert client.get(f"/alflow/{CAMPAIGN}/parity.png").data.startswith(PNG_MAGIC)
    finally:
        connection.client.drop_database(store_name)
        connection.client.drop_database(lp_name)
