"""Processes: children that never outlive their parent, and whether a pid is alive."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable
from pathlib import Path

__all__ = ["die_with_parent", "pid_alive"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when its parent dies.

    A worker killed with ``kill -9`` then takes its MACE training or GPAW job
    with it, instead of leaving an orphan writing into a launch directory the
    rerun uses. libc is resolved here, in the parent: the child only makes the
    system call (nothing that could wait on a lock another thread held at
    fork). None where ``prctl`` is missing (not Linux).
    """
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        with contextlib.suppress(OSError):
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return preexec


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs on this machine (a zombie, killed and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True
