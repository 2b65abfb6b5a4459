"""The local MongoDB-wire server: the one place that knows how it starts and stops.

``alflow run`` with a store directory (default ``alflow-store/``) needs a
server; this module starts one, or finds the one already running for that
directory, and every other part of alflow talks to it as plain pymongo on its
``mongodb://127.0.0.1:PORT`` URI, the same code path as a cluster's server.

The server is a separate program, never imported into alflow's process:

- ``secantusd-py`` (PyPI ``secantusdb``, GPL-2.0, WiredTiger storage), started
  with ``--sync-on-commit`` so an acknowledged write survives ``kill -9``;
- or a site's ``mongod`` (journaled by default), chosen with the one setting
  ``local_server`` (``ALFLOW_LOCAL_SERVER=mongod`` or a path to the binary).

Layout of a store directory::

    alflow-store/
      server.json    program, pid, port, URI of the running server
      server.log     the server's own output
      server.lock    serialises start/stop between alflow processes
      users/<pid>    one file per alflow process using the server
      db/            the server's data (WiredTiger files)

The server runs in its own session, so it outlives an alflow process killed
with ``kill -9``; the next alflow process finds it through ``server.json``
(or, if it died too, restarts it on the same data). The last alflow process
to stop using a server it did not ``pin`` stops it; ``alflow server start``
pins it (it keeps running until ``alflow server stop``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from alflow.errors import StoreError
from alflow.procutil import pid_alive

__all__ = [
    "SERVER_PROGRAMS",
    "LocalServer",
    "ensure_server",
    "has_data",
    "read_record",
    "release_server",
    "stop_server",
]

log = logging.getLogger(__name__)

#: Known server programs: name → the kind of data directory it keeps.
SERVER_PROGRAMS = {"secantusd-py": "secantus", "mongod": "mongod"}
_RECORD, _LOG, _LOCK, _USERS, _DATA = "server.json", "server.log", "server.lock", "users", "db"
_HOST = "127.0.0.1"


@dataclass(frozen=True)
class LocalServer:
    """A running local server.

    Attributes
    ----------
    store_dir
        The store directory (data, record and log).
    uri
        ``mongodb://127.0.0.1:PORT`` (what every client connects to).
    pid
        The server's process id.
    program
        The program's path or name (``secantusd-py`` or a ``mongod``).
    kind
        ``secantus`` or ``mongod``.
    pinned
        Started by ``alflow server start``: only ``alflow server stop`` stops it.
    """

    store_dir: Path
    uri: str
    pid: int
    program: str
    kind: str
    pinned: bool = False


def _kind_of(program: str) -> str:
    name = Path(program).name
    if name.startswith("mongod"):
        return "mongod"
    if name.startswith("secantusd"):
        return "secantus"
    raise StoreError(
        f"local_server: unknown server program {program!r} "
        "(use 'secantusd-py', 'mongod' or a path to a mongod binary)"
    )


def _resolve_program(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        hint = (
            "install it with 'pip install secantusdb'"
            if _kind_of(program) == "secantus"
            else "install MongoDB, or set ALFLOW_LOCAL_SERVER=secantusd-py"
        )
        raise StoreError(f"local server program {program!r} not found on PATH: {hint}")
    return path


@contextlib.contextmanager
def _locked(store_dir: Path) -> Iterator[None]:
    """Hold the store directory's start/stop lock (blocking, between processes)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(store_dir / _LOCK):
        yield


def _serves(pid: int, data_dir: Path) -> bool:
    """True if process ``pid`` is alive and a server of ``data_dir`` (not a reused pid)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return str(data_dir).encode() in cmdline


def _ping(uri: str, timeout_s: float) -> bool:
    import pymongo
    from pymongo.errors import PyMongoError

    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=int(timeout_s * 1000), connectTimeoutMS=1000
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def has_data(store_dir: str | Path) -> bool:
    """True if ``store_dir`` holds a server's data directory (a store was created there)."""
    return (Path(store_dir) / _DATA).is_dir()


def read_record(store_dir: str | Path) -> LocalServer | None:
    """The server recorded for ``store_dir`` if it is running, else None."""
    store_dir = Path(store_dir).resolve()
    try:
        record = json.loads((store_dir / _RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not _serves(int(record.get("pid", 0)), store_dir / _DATA):
        return None
    return LocalServer(
        store_dir=store_dir,
        uri=record["uri"],
        pid=int(record["pid"]),
        program=record["program"],
        kind=record["kind"],
        pinned=bool(record.get("pinned", False)),
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_taken(port: int) -> bool:
    """True if something listens on ``port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return True
    return False


def _data_kind(data_dir: Path) -> str | None:
    """The kind of server whose data is in ``data_dir`` (None: empty or absent)."""
    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        return None
    if (data_dir / "storage.bson").exists() or (data_dir / "mongod.lock").exists():
        return "mongod"
    if (data_dir / "WiredTiger").exists():
        return "secantus"
    return "unknown"


def _check_data_dir(store_dir: Path, kind: str) -> None:
    found = _data_kind(store_dir / _DATA)
    if found is None or found == kind:
        return
    if found == "unknown":
        raise StoreError(
            f"{store_dir / _DATA} holds files that are not a MongoDB data directory; "
            "use another --store directory"
        )
    setting = "mongod" if found == "mongod" else "secantusd-py"
    raise StoreError(
        f"{store_dir / _DATA} is a {found} data directory, not one for {kind}: "
        f"set ALFLOW_LOCAL_SERVER={setting} to open it, or use another --store directory"
    )


def _command(program: str, kind: str, port: int, data_dir: Path) -> list[str]:
    if kind == "mongod":
        return [program, "--bind_ip", _HOST, "--port", str(port), "--dbpath", str(data_dir)]
    return [
        program,
        "--host",
        _HOST,
        "--port",
        str(port),
        "--storage-path",
        str(data_dir),
        "--sync-on-commit",  # acknowledged writes survive kill -9 (measured: none lost)
        "--standalone",
        "--log-level",
        "WARNING",
    ]


def _start_error(store_dir: Path, port: int, returncode: int | None) -> StoreError:
    """A one-line error from what the server wrote before it died."""
    try:
        text = (store_dir / _LOG).read_text(errors="replace")[-4000:]
    except OSError:
        text = ""
    if "Address already in use" in text:
        return _port_error(port)
    if "resource busy" in text or "mongod.lock" in text:
        return StoreError(
            f"{store_dir / _DATA} is in use by another server process; stop it, or use "
            "another --store directory"
        )
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "no output")
    state = "did not answer ping" if returncode is None else f"exited with code {returncode}"
    return StoreError(f"local server for {store_dir} {state}: {last} (see {store_dir / _LOG})")


def _start(store_dir: Path, program: str, port: int, timeout_s: float, pinned: bool) -> LocalServer:
    kind = _kind_of(program)
    path = _resolve_program(program)
    _check_data_dir(store_dir, kind)
    if port and _port_taken(port):
        raise _port_error(port)
    port = port or _recorded_port(store_dir) or _free_port()
    data_dir = store_dir / _DATA
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(store_dir / _LOG, "ab") as out:
        process = subprocess.Popen(
            _command(path, kind, port, data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives a killed alflow; found again via server.json
        )
    uri = f"mongodb://{_HOST}:{port}/"
    deadline = time.monotonic() + timeout_s
    while not _ping(uri, 0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            raise _start_error(store_dir, port, process.poll())
        time.sleep(0.1)
    server = LocalServer(store_dir, uri, process.pid, path, kind, pinned)
    record = {"program": path, "kind": kind, "pid": process.pid, "port": port, "uri": uri}
    record |= {"pinned": pinned, "started": time.time()}
    tmp = store_dir / f".{_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(store_dir / _RECORD)
    log.info("started %s for %s at %s (pid %d)", Path(path).name, store_dir, uri, process.pid)
    return server


def _recorded_port(store_dir: Path) -> int:
    """The port of a server that died without stopping, if still free (clients keep its URI)."""
    try:
        port = int(json.loads((store_dir / _RECORD).read_text())["port"])
    except (OSError, ValueError, KeyError):
        return 0
    deadline = time.monotonic() + 5.0  # a killed server's threads may still hold it a moment
    while _port_taken(port):
        if time.monotonic() > deadline:
            return 0
        time.sleep(0.05)
    return port


def _port_error(port: int) -> StoreError:
    return StoreError(
        f"port {port} on {_HOST} is taken by another program: free it, or unset "
        "ALFLOW_SERVER_PORT so alflow picks a free port"
    )


_REGISTERED: set[tuple[Path, int]] = set()


def _register_user(store_dir: Path) -> None:
    users = store_dir / _USERS
    users.mkdir(exist_ok=True)
    (users / str(os.getpid())).touch()
    if (store_dir, os.getpid()) not in _REGISTERED:  # a forked child registers anew
        _REGISTERED.add((store_dir, os.getpid()))
        atexit.register(release_server, store_dir, quiet=True)


def _live_users(store_dir: Path) -> list[int]:
    users = store_dir / _USERS
    live = []
    for entry in users.glob("*") if users.is_dir() else []:
        pid = int(entry.name) if entry.name.isdigit() else 0
        if pid and pid_alive(pid):
            live.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return live


def ensure_server(
    store_dir: str | Path,
    *,
    program: str = "secantusd-py",
    port: int = 0,
    timeout_s: float = 60.0,
    pin: bool = False,
) -> LocalServer:
    """Start the local server of ``store_dir``, or find the one running; wait for ping.

    This process is registered as a user of the server: at its exit the
    server is stopped if no other alflow process uses it and it is not pinned.

    Parameters
    ----------
    store_dir
        The store directory (created if missing).
    program
        ``secantusd-py``, ``mongod`` or a path to either.
    port
        TCP port on 127.0.0.1; 0 picks a free one.
    timeout_s
        How long to wait for the server to answer ``ping``.
    pin
        Keep it running after every alflow process is gone (``alflow server start``).

    Returns
    -------
    LocalServer

    Raises
    ------
    StoreError
        Program missing, port taken, data directory of another server, or a
        server that does not answer; one line naming the cause.
    """
    store_dir = Path(store_dir).resolve()
    if store_dir.exists() and not store_dir.is_dir():
        raise StoreError(f"store {store_dir} is a file, not a store directory")
    with _locked(store_dir):
        server = read_record(store_dir)
        if server is not None and _kind_of(program) != server.kind:
            raise StoreError(
                f"{store_dir} is served by {server.program} (pid {server.pid}); "
                f"stop it with 'alflow server stop --store {store_dir}' to use {program}"
            )
        if server is not None and not _ping(server.uri, timeout_s):
            raise StoreError(
                f"the server of {store_dir} (pid {server.pid}) does not answer at {server.uri}; "
                f"stop it with 'alflow server stop --store {store_dir}'"
            )
        if server is None:
            server = _start(store_dir, program, port, timeout_s, pin)
        elif pin and not server.pinned:
            _rewrite_record(store_dir, pinned=True)
            server = LocalServer(**{**server.__dict__, "pinned": True})
        _register_user(store_dir)
    return server


def _rewrite_record(store_dir: Path, **changes: object) -> None:
    path = store_dir / _RECORD
    record = json.loads(path.read_text()) | changes
    tmp = store_dir / f".{_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def _terminate(server: LocalServer, timeout_s: float = 30.0, quiet: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(server.pid):
        log.warning("server pid %d ignored SIGTERM for %.0f s: killing it", server.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
    (server.store_dir / _RECORD).unlink(missing_ok=True)
    if not quiet:
        log.info("stopped the local server of %s", server.store_dir)


def release_server(store_dir: str | Path, *, quiet: bool = False) -> None:
    """This process stops using the server; the last user stops an unpinned server.

    ``quiet``: log nothing (at interpreter exit, where the log's stream may be closed).
    """
    store_dir = Path(store_dir).resolve()
    _REGISTERED.discard((store_dir, os.getpid()))
    (store_dir / _USERS / str(os.getpid())).unlink(missing_ok=True)
    with _locked(store_dir):
        server = read_record(store_dir)
        if server is None or server.pinned or _live_users(store_dir):
            return
        _terminate(server, quiet=quiet)


def stop_server(store_dir: str | Path) -> bool:
    """Stop the server of ``store_dir`` now, whoever uses it.

    Returns
    -------
    bool
        True if a server was running.
    """
    store_dir = Path(store_dir).resolve()
    with _locked(store_dir):
        server = read_record(store_dir)
        if server is None:
            (store_dir / _RECORD).unlink(missing_ok=True)
            return False
        _terminate(server)
        return True
