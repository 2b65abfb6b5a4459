"""`alflow webgui`: FireWorks' GUI and the alflow pages in headless Chromium.

A writer holds the store open on the test server (as `alflow run` would)
while the GUI runs in a subprocess: the GUI must show the campaign's
workflows and figures, pick up what the writer writes, and never write the
store itself.
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
from test_report import (
    CAMPAIGN,
    CONFIG,
    PNG_MAGIC,
    build_store,
    demo_databases,
    dump_databases,
    env_for,
)

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
def gui(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[dict[str, Any]]:
    """The demo campaign with its writer still open, and `alflow webgui` serving it."""
    work = tmp_path_factory.mktemp("webgui")
    with demo_databases(mongo_uri) as settings:
        from alflow.store import open_store
        from alflow.workflow.launchpad import open_launchpad

        # the writer's own connection, open for the whole module (a running `alflow run`)
        connection, writer = open_store(settings.store, db_name=settings.store_name)
        launchpad = open_launchpad(connection, settings.launchpad_name)
        process = subprocess.Popen(
            _alflow("webgui", "--store", settings.store, "--port", "0", "--refresh-s", "1"),
            cwd=work,
            env={**_env(), **env_for(settings)},
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
            yield {
                "url": url,
                "settings": settings,
                "writer": writer,
                "launchpad": launchpad,
                "work": work,
                "process": process,
            }
        finally:
            process.terminate()
            process.wait(timeout=20)
            connection.client.close()


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
    settings = gui["settings"]
    names = (settings.store_name, settings.launchpad_name)
    before = dump_databases(settings.store, names)
    base = gui["url"]
    browse(base, gui["work"] / "chrome-nowrite-1")
    browse(base + f"alflow/{CAMPAIGN}/", gui["work"] / "chrome-nowrite-2")
    for path in ("wf/1", "fw/5", "wf/metadata/campaign/demo/", "report/", "fw/READY/"):
        assert fetch(base + path)[0] == 200, path
    for path in ("alflow/", f"alflow/{CAMPAIGN}/version", f"alflow/{CAMPAIGN}/parity.png"):
        assert fetch(base + path)[0] == 200, path
    after = dump_databases(settings.store, names)
    assert sorted(after) == sorted(before), "no collection created"
    assert after == before, "no document or index written"


@pytest.mark.browser
def test_gui_shows_what_the_writer_writes(gui: dict[str, Any]) -> None:
    from alflow.workflow.builder import iteration_workflow

    base = gui["url"]
    version_url = base + f"alflow/{CAMPAIGN}/version"
    old_version = fetch(version_url)[2]
    gui["launchpad"].add_wf(iteration_workflow(CONFIG, 1))
    gui["writer"].put_iteration(CAMPAIGN, 2, {"iteration": 2, "errors": {"force_rmse_eV_A": 0.02}})
    deadline = time.monotonic() + 10  # versions are reused for up to a second
    while fetch(version_url)[2] == old_version and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fetch(version_url)[2] != old_version, "the page's version changes: it reloads"
    home = browse(base, gui["work"] / "chrome-live-1")
    assert "demo iteration 1" in home and "demo iteration 0" in home
    page = browse(base + f"alflow/{CAMPAIGN}/", gui["work"] / "chrome-live-2")
    assert "demo iteration 1" in page
    assert len(re.findall(r'class="alflow-iteration"', page)) == 3
    assert "0.0200" in page


def test_refuses_other_hosts_without_credentials(tmp_path: Path) -> None:
    result = subprocess.run(
        _alflow("webgui", "--store", str(tmp_path / "none"), "--host", "0.0.0.0"),
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


def test_webgui_refuses_a_missing_store(tmp_path: Path) -> None:
    result = subprocess.run(
        _alflow("webgui", "--store", str(tmp_path / "none"), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "no alflow store" in result.stderr
    assert not (tmp_path / "none").exists(), "a reader never creates a store"


def _live(settings: Any) -> Any:
    from alflow.monitor.live import LiveStore

    return LiveStore(
        settings.store, store_name=settings.store_name, launchpad_name=settings.launchpad_name
    )


def test_basic_auth_covers_every_page(server_settings: Any) -> None:
    import base64

    from alflow.monitor.webgui import create_app

    build_store(server_settings)
    app = create_app(_live(server_settings), username="ana", password="s3cret")
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


def test_fingerprint_changes_with_the_campaign(server_settings: Any) -> None:
    """The page version is a fingerprint of the state read on the server."""
    from fireworks import FWorker

    from alflow.monitor.pages import VersionCache, campaign_version

    store, launchpad = build_store(server_settings)
    view = _live(server_settings).current()
    first = campaign_version(view, CAMPAIGN)
    assert campaign_version(view, CAMPAIGN) == first
    store.put_iteration(CAMPAIGN, 2, {"iteration": 2})
    second = campaign_version(view, CAMPAIGN)
    assert second != first, "a new iteration document"
    fw_id = launchpad.fireworks.find_one({"state": "READY"}, {"fw_id": 1})["fw_id"]
    launchpad.checkout_fw(FWorker(name="test"), ".", fw_id=fw_id)
    third = campaign_version(view, CAMPAIGN)
    assert third != second, "a Firework changed state"
    store.add_label("frame-0", {"parameters_hash": "q", "ok": False, "campaign": CAMPAIGN})
    assert campaign_version(view, CAMPAIGN) != third, "a new DFT label"

    cache = VersionCache(max_age_s=60.0)
    cached = cache.get(view, CAMPAIGN)
    store.set_campaign_status(CAMPAIGN, "running")
    assert cache.get(view, CAMPAIGN) == cached, "reused within max_age_s"
    assert VersionCache(max_age_s=0.0).get(view, CAMPAIGN) != cached


def test_webgui_on_a_mongodb_uri(server_settings: Any) -> None:
    from test_report import fill_store

    from alflow.monitor.webgui import create_app
    from alflow.store import open_store
    from alflow.workflow.builder import iteration_workflow
    from alflow.workflow.launchpad import open_launchpad

    connection, store = open_store(server_settings.store, db_name=server_settings.store_name)
    fill_store(store)
    open_launchpad(connection, server_settings.launchpad_name).add_wf(iteration_workflow(CONFIG, 0))
    client = create_app(_live(server_settings)).test_client()
    assert b"demo iteration 0" in client.get("/").data
    page = client.get(f"/alflow/{CAMPAIGN}/").data
    assert b"demo iteration 0" in page
    assert client.get(f"/alflow/{CAMPAIGN}/parity.png").data.startswith(PNG_MAGIC)
    assert client.get("/alflow/nope/").status_code == 404


def test_gui_on_an_empty_store_creates_nothing(server_settings: Any, mongo_uri: str) -> None:
    """A reader neither initialises the LaunchPad nor creates alflow's indexes."""
    import pymongo

    from alflow.monitor.webgui import create_app

    client = create_app(_live(server_settings)).test_client()
    assert client.get("/").status_code == 200
    page = client.get("/alflow/")
    assert page.status_code == 200 and b"No campaigns in this store yet" in page.data
    assert client.get(f"/alflow/{CAMPAIGN}/").status_code == 404
    server: Any = pymongo.MongoClient(mongo_uri)
    try:
        names = set(server.list_database_names())
        assert server_settings.store_name not in names
        assert server_settings.launchpad_name not in names
    finally:
        server.close()
