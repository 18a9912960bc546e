"""Lease owners: who holds a document while a background worker processes it.

A lease is a row-level claim in the ledger (see :class:`~tribrid.ledger.base.RunQueue`).
Its owner id says which process, and which call of it, holds it, so a lease whose
holder died on this host can be taken over at once instead of when it expires.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading

_owner_lock = threading.Lock()
_owner: tuple[int, str] | None = None


def lease_owner() -> str:
    """This process's lease owner id: ``host:pid:token`` (a fresh token after a fork)."""
    global _owner
    with _owner_lock:
        if _owner is None or _owner[0] != os.getpid():
            token = secrets.token_hex(4)
            _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{token}")
        return _owner[1]


def call_owner() -> str:
    """A lease owner id for one :func:`process_documents` call: ``host:pid:token:call``.

    Leases belong to a call, not to its process: the documents a call handed to the
    writer stay leased until the writer records them, and a second delivery of the same
    message to the same process must find them taken, not take them again.
    """
    return f"{lease_owner()}:{secrets.token_hex(4)}"


_abandoned: set[str] = set()


def abandon(owner: str) -> None:
    """Declare a call's leases dead although its process lives on.

    For a call that ended without being able to give its leases back (the ledger was
    away) and with nothing of its work still in flight: a retry of it in this process
    may take them over at once instead of waiting for them to expire.
    """
    with _owner_lock:
        _abandoned.add(owner)


def owner_is_dead(owner: str) -> bool:
    """Whether a lease owner is a process of this host that no longer runs.

    Owners on other hosts, and unparseable ones, are presumed alive: their leases are
    taken over only when they expire.
    """
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        mine = lease_owner()  # this process's calls are alive; an older one with its pid is not
        if owner in _abandoned:
            return True
        return owner != mine and not owner.startswith(mine + ":")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


__all__ = ["abandon", "call_owner", "lease_owner", "owner_is_dead"]
