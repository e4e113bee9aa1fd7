"""Whether an exception means the database cannot be reached or cannot serve now (not a bad statement):
the HTTP layer answers such a request with a 503, the engine says so in the ``last_error`` of a run it
breaks. And whether it means there is no room left to write (a 507)."""

from __future__ import annotations

import errno
import socket
import sqlite3
from collections.abc import Iterator
from types import TracebackType

import asyncpg
from sqlalchemy import exc as sa_exc

__all__ = ["database_unavailable", "storage_full"]

# Failures of the connection to the database, or of the database as a service, not of a statement.
_SQLALCHEMY_UNAVAILABLE = (
    sa_exc.OperationalError,  # PEP 249: "related to the database's operation": disconnects, server gone
    sa_exc.InterfaceError,  # the driver's connection is closed or broken
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no pooled connection became free in time
)
_ASYNCPG_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    # A deadlock or serialization failure PostgreSQL broke by rolling this transaction back: nothing was
    # written, and the same request again succeeds (e.g. a cancel racing the worker that claims the run).
    asyncpg.exceptions.TransactionRollbackError,
)
# Socket-level failures count only when raised inside the database's client (connecting to it): the
# same exceptions from elsewhere (a file write, a sandbox pipe) are not the database's.
_SOCKET_ERRORS = (ConnectionError, TimeoutError, socket.gaierror)
_DATABASE_CLIENT_MODULES = ("sqlalchemy.", "asyncpg.")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (``raise ... from``, exceptions during handling, a DBAPI error's orig)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        pending += [error.__cause__, error.__context__, orig if isinstance(orig, BaseException) else None]


def _raised_in_database_client(tb: TracebackType | None) -> bool:
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(_DATABASE_CLIENT_MODULES):
            return True
        tb = tb.tb_next
    return False


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or cannot serve now (not a bad statement), so
    the request may succeed once it is back."""
    for error in _chain(exc):
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, _SQLALCHEMY_UNAVAILABLE + _ASYNCPG_UNAVAILABLE):
            return True
        if isinstance(error, _SOCKET_ERRORS) and _raised_in_database_client(error.__traceback__):
            return True
    return False


_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` means there is no room left for what was being written: the database's disk
    (PostgreSQL's "disk full", SQLite's SQLITE_FULL) or any other write of the request's."""
    for error in _chain(exc):
        if isinstance(error, asyncpg.exceptions.DiskFullError):
            return True
        if isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", 0) == sqlite3.SQLITE_FULL:
            return True
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return True
    return False
