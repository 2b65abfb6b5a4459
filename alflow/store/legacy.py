"""Import a one-file store of alflow ≤ 0.1 (``alflow-store.bson``) into a server.

The old format: a BSON header ``{format: "alflow-embedded-store", version: 1}``,
then per collection one ``{db, coll, indexes}`` record and one ``{db, coll,
doc}`` record per document. Documents are inserted as they are (``_id``
kept, GridFS chunks included); indexes are created by alflow and FireWorks
when they next open the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson

from alflow.errors import StoreError

__all__ = ["LEGACY_FORMAT", "import_legacy_store"]

log = logging.getLogger(__name__)

#: The header's ``format`` of a one-file store.
LEGACY_FORMAT = "alflow-embedded-store"
_BATCH = 1000


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            records = bson.decode_file_iter(handle)
            header = next(records, None)
            if header is None or header.get("format") != LEGACY_FORMAT:
                raise StoreError(
                    f"{path} is not a one-file alflow store (no {LEGACY_FORMAT} header)"
                )
            yield from records
    except (OSError, bson.errors.BSONError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None


def import_legacy_store(path: str | Path, client: Any) -> dict[str, int]:
    """Copy every document of the one-file store ``path`` into ``client``'s server.

    Parameters
    ----------
    path
        The old ``.bson`` store file (read, never changed).
    client
        A pymongo client of the target server.

    Returns
    -------
    dict
        ``"db.collection"`` → documents imported.

    Raises
    ------
    StoreError
        Unreadable file, or a target collection that already holds documents
        (an import runs once: nothing is overwritten or duplicated).
    """
    path = Path(path)
    seen: set[tuple[str, str]] = set()
    for record in _records(path):  # first pass: refuse before writing anything
        if "doc" not in record:
            continue
        key = (record["db"], record["coll"])
        if key not in seen:
            seen.add(key)
            if client[key[0]][key[1]].estimated_document_count() > 0:
                raise StoreError(
                    f"{key[0]}.{key[1]} on the target server is not empty: {path} was imported "
                    "already, or pick an empty --store"
                )
    counts: dict[str, int] = {}
    batches: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in _records(path):
        if "doc" not in record:
            continue
        key = (record["db"], record["coll"])
        batch = batches.setdefault(key, [])
        batch.append(record["doc"])
        if len(batch) >= _BATCH:
            client[key[0]][key[1]].insert_many(batch, ordered=False)
            counts[".".join(key)] = counts.get(".".join(key), 0) + len(batch)
            batch.clear()
    for key, batch in batches.items():
        if batch:
            client[key[0]][key[1]].insert_many(batch, ordered=False)
        counts[".".join(key)] = counts.get(".".join(key), 0) + len(batch)
    log.info("imported %d documents from %s", sum(counts.values()), path)
    return counts
