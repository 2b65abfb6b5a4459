"""The database driver's errors, under alflow's names (the rest of alflow does not import pymongo).

- :data:`DatabaseError`: any error of the driver (``pymongo.errors.PyMongoError``);
- :data:`ServerConnectionError`: the server cannot be reached or went away
  (``pymongo.errors.ConnectionFailure``: timeouts, refused connections, a
  restarting server).
"""

from __future__ import annotations

from pymongo.errors import ConnectionFailure as ServerConnectionError
from pymongo.errors import PyMongoError as DatabaseError

__all__ = ["DatabaseError", "ServerConnectionError"]
