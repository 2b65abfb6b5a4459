"""The embedded server: one in-process mongomock server persisted to one file.

The LaunchPad and the alflow store share this server in the process that owns
it. Its whole state (every database, collection and index) is written to a
file atomically with :meth:`EmbeddedServer.save` (write a temporary file,
fsync, rename), so a killed process resumes from the last save. A lock file
keeps a second process from opening the same store for writing; readers
(``alflow status``, the web GUI) open a read-only snapshot.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any, BinaryIO

import bson

from alflow.errors import StoreError

__all__ = ["EmbeddedServer", "open_embedded"]

log = logging.getLogger(__name__)

_MAGIC = {"format": "alflow-embedded-store", "version": 1}
_SERVERS: dict[tuple[Path, bool], EmbeddedServer] = {}


class EmbeddedServer:
    """An in-process MongoDB stand-in (mongomock) persisted to ``path``.

    Parameters
    ----------
    path
        The state file. Created on the first :meth:`save`.
    writable
        Take the lock file and allow :meth:`save`. A read-only server loads a
        snapshot and never writes.
    """

    def __init__(self, path: str | Path, *, writable: bool = True) -> None:
        import mongomock
        import mongomock.gridfs

        mongomock.gridfs.enable_gridfs_integration()
        self.path = Path(path).resolve()
        self.writable = writable
        self._lock_file: BinaryIO | None = None
        if writable:
            self._acquire_lock()
        self.client: Any = mongomock.MongoClient()
        if self.path.exists():
            self._load()

    # ------------------------------------------------------------------ locking
    def _acquire_lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().decode(errors="replace").strip() or "another process"
            handle.close()
            raise StoreError(
                f"store {self.path} is in use by {owner}; an embedded store has one writer "
                "at a time (read-only commands such as 'alflow status' still work)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"alflow process {os.getpid()}".encode())
        handle.flush()
        self._lock_file = handle

    def close(self) -> None:
        """Release the lock (the state is not saved: call :meth:`save` first)."""
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
        _SERVERS.pop((self.path, self.writable), None)

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                records = bson.decode_file_iter(handle)
                header = next(records, None)
                if header is None or header.get("format") != _MAGIC["format"]:
                    raise StoreError(f"{self.path} is not an alflow embedded store")
                batches: dict[tuple[str, str], list[dict[str, Any]]] = {}
                indexes: list[dict[str, Any]] = []
                for record in records:
                    if "doc" in record:
                        batches.setdefault((record["db"], record["coll"]), []).append(record["doc"])
                    else:
                        indexes.append(record)
        except (OSError, bson.errors.BSONError) as exc:
            raise StoreError(f"cannot read embedded store {self.path}: {exc}") from None
        # Data first, indexes after: mongomock checks a unique index on every
        # insert by scanning the collection, which would make loading quadratic.
        for (db, coll), docs in batches.items():
            self.client[db][coll].insert_many(docs)
        for record in indexes:
            collection = self.client[record["db"]][record["coll"]]
            for name, spec in record["indexes"].items():
                if name == "_id_":
                    continue
                options = {k: v for k, v in spec.items() if k in ("unique", "sparse")}
                collection.create_index([tuple(k) for k in spec["key"]], name=name, **options)
        log.debug("loaded embedded store %s", self.path)

    def save(self) -> None:
        """Write the whole state atomically (temporary file, fsync, rename)."""
        if not self.writable:
            raise StoreError(f"embedded store {self.path} was opened read-only")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(bson.encode(_MAGIC))
            for db_name in self.client.list_database_names():
                db = self.client[db_name]
                for coll_name in db.list_collection_names():
                    collection = db[coll_name]
                    info = {
                        name: {
                            "key": [[field, direction] for field, direction in spec["key"]],
                            **{k: v for k, v in spec.items() if k in ("unique", "sparse")},
                        }
                        for name, spec in collection.index_information().items()
                    }
                    handle.write(bson.encode({"db": db_name, "coll": coll_name, "indexes": info}))
                    for doc in collection.find():
                        handle.write(bson.encode({"db": db_name, "coll": coll_name, "doc": doc}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


def open_embedded(path: str | Path, *, writable: bool = True) -> EmbeddedServer:
    """Return this process's server for ``path``, opening it once.

    Every LaunchPad and store in one process must share one writable server
    object: a second mongomock client would be an independent snapshot. A
    read-only open always loads a fresh snapshot of the file.
    """
    if not writable:  # a reader wants the state as saved now, not a cached snapshot
        return EmbeddedServer(path, writable=False)
    key = (Path(path).resolve(), writable)
    server = _SERVERS.get(key)
    if server is None:
        server = EmbeddedServer(path, writable=writable)
        _SERVERS[key] = server
    return server
